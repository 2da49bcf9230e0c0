"""PAdES signing of archive PDFs (pyHanko): see :mod:`app.signing.signer`."""
