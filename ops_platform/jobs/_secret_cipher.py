"""The key of `secrets.value_ciphertext`: values are stored encrypted (Fernet), not hashed,
because the app needs them back.

The key comes from `OPS_SECRETS_KEY` (one or more comma-separated Fernet keys, the first
encrypts), or in the embedded default from `<OPS_DATA_DIR>/secrets.key`, generated on first
use with mode 0600. Values and keys are never logged and never put in metadata: `source`
says only where the key came from.
"""

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ops_platform.lazy import lazy_module
from ops_platform.settings import SettingsError

if TYPE_CHECKING:
    from cryptography import fernet as fernet_lib
else:
    fernet_lib = lazy_module("cryptography.fernet")

KEY_ENV = "OPS_SECRETS_KEY"
KEY_FILE_NAME = "secrets.key"


@dataclass(frozen=True)
class SecretCipher:
    fernet: "fernet_lib.MultiFernet"
    source: str  # where the key came from, for metadata (never the key itself)

    def encrypt(self, value: str) -> str:
        return self.fernet.encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        return self.fernet.decrypt(ciphertext.encode()).decode()


def _fernet_keys(raw: str, where: str) -> "fernet_lib.MultiFernet":
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise SettingsError(f"{where} is empty; it must hold a Fernet key (Fernet.generate_key())")
    fernets = []
    for number, key in enumerate(keys, 1):
        try:
            fernets.append(fernet_lib.Fernet(key))
        except (ValueError, TypeError):
            raise SettingsError(
                f"{where}: key #{number} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return fernet_lib.MultiFernet(fernets)


def load_cipher(env: dict | None = None, data_dir: Path | None = None) -> SecretCipher:
    """The cipher from OPS_SECRETS_KEY, else from the key file under the data folder."""
    env = os.environ if env is None else env
    if env.get(KEY_ENV, "").strip():
        return SecretCipher(_fernet_keys(env[KEY_ENV], KEY_ENV), KEY_ENV)
    if data_dir is None:
        raise SettingsError(f"{KEY_ENV} is not set and no data folder holds a key file")
    path = Path(data_dir) / KEY_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(fernet_lib.Fernet.generate_key())
        except FileExistsError:
            pass  # another process created it first: use theirs
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)  # the key file is readable by its owner only
    return SecretCipher(_fernet_keys(path.read_text(), f"key file {path}"), f"key file {path}")
