"""Everything that talks to an npm registry goes through here."""

from chainwatch.registry.client import RegistryClient
from chainwatch.registry.npmrc import NpmConfig

__all__ = ["NpmConfig", "RegistryClient"]
