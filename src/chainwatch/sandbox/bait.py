"""Bait secrets: a home folder and environment that look like a developer's, with fresh random
values each run so that any of them seen leaving (in a DNS name, a request, a TLS name) is proof
of theft. None of it is real; the real home and environment never enter the sandbox."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

HOME = "/home/node"
#: the bait name of the host name: a host fact, not a secret (CW-DYN-EXFIL at high, not critical)
HOST_NAME = "host name"
USER = "node"


@dataclass(frozen=True)
class Bait:
    #: path relative to HOME -> content
    files: dict[str, str]
    #: environment variable -> value
    env: dict[str, str]
    #: bait name -> secret value (what the sink and the parser look for)
    values: dict[str, str]
    #: the sandbox's host name, fresh each run: seen leaving, it is host fingerprinting
    hostname: str = "build-host"

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f"{HOME}/{rel}" for rel in self.files)


def make_bait() -> Bait:
    npm = "npm_" + secrets.token_hex(18)
    gh = "ghp_" + secrets.token_hex(18)
    aws_id = "AKIA" + secrets.token_hex(8).upper()
    aws_secret = secrets.token_hex(20)
    ssh = secrets.token_hex(32)
    wallet = secrets.token_hex(32)
    files = {
        ".npmrc": f"//registry.npmjs.org/:_authToken={npm}\n",
        ".aws/credentials": f"[default]\naws_access_key_id = {aws_id}\n"
                            f"aws_secret_access_key = {aws_secret}\n",
        ".ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----\n"
                           f"{ssh}\n-----END OPENSSH PRIVATE KEY-----\n",
        ".config/gh/hosts.yml": f"github.com:\n    oauth_token: {gh}\n    user: node\n",
        ".ethereum/keystore/UTC--2026-01-01T00-00-00Z--0000000000000000000000000000000000000001":
            '{"address":"0000000000000000000000000000000000000001","crypto":{"ciphertext":"'
            f'{wallet}"}},"version":3}}\n',
    }
    env = {
        "NPM_TOKEN": npm,
        "NODE_AUTH_TOKEN": npm,
        "GITHUB_TOKEN": gh,
        "GH_TOKEN": gh,
        "AWS_ACCESS_KEY_ID": aws_id,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
    }
    hostname = "build-" + secrets.token_hex(4)
    values = {HOST_NAME: hostname, "npm token": npm, "GitHub token": gh, "AWS access key": aws_id,
              "AWS secret key": aws_secret, "SSH private key": ssh, "wallet key": wallet}
    return Bait(files, env, values, hostname)
