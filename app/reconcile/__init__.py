"""The reconciliation sweep: tickets whose webhook was lost are found through Zammad's search and queued."""
