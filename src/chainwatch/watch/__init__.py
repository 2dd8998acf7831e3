"""Watch: follow the registry, scan each new release of the watched packages, raise alerts."""
