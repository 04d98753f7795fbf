"""The `minilm` command line: one module per command, each a thin wrapper over one library call."""
