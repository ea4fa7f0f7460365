"""The `t2` command line: one module per command; each parses, calls the library and renders."""
