"""Static analysis: rules (data) run over a package's files, then scoring into a verdict."""
