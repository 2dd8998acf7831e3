"""Reading a package's files into memory, under limits, without ever following a link."""

from chainwatch.archive.folder import read_folder
from chainwatch.archive.limits import Limits
from chainwatch.archive.tarball import read_tarball

__all__ = ["Limits", "read_folder", "read_tarball"]
