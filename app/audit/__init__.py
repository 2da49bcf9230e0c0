"""The fixity audit: re-reads every archive, checks it against its sidecar, its signatures and the manifest.

:mod:`.walk` finds archives and sidecars, :mod:`.fixity` checks one archive,
:mod:`.signatures` and :mod:`.certpaths` verify its signatures and chains,
:mod:`.manifest_check` the manifest's hash chain, :mod:`.run` runs it all, :mod:`.report`
and :mod:`.cli` show it (``python -m app audit``), :mod:`.schedule` runs it in the service.
"""
