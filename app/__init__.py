"""zammad-pdf-archiver: archive Zammad tickets as signed PDF files."""

__version__ = "0.1.0"
SERVICE_NAME = "zammad-pdf-archiver"
