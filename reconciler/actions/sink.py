"""The local sink: deliveries written to files when no SMTP or SMS provider is set.

``make demo`` and a laptop without a mail server still get real, rendered messages:
e-mail as MIME files in a maildir (``<dir>/mail/new/…``, readable by any mail client
or ``cat``), SMS as one JSON object per line in ``<dir>/sms.jsonl``. Writes are
atomic: a maildir message appears by rename, an SMS line by one ``O_APPEND`` write
under an exclusive lock, so concurrent dispatchers never interleave.
"""

from __future__ import annotations

import contextlib
import json
import mailbox
import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from reconciler.actions.delivery import EmailMessage, Receipt, SmsMessage, TemporaryDeliveryError
from reconciler.actions.mime import message_id_header, to_mime
from reconciler.private_dir import STATE_DIRECTORY, ensure_private_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_OUTBOX_DIR", "MaildirSink"]

DEFAULT_OUTBOX_DIR = STATE_DIRECTORY / "outbox"


class MaildirSink:
    """Both an ``EmailTransport`` and an ``SmsTransport`` that write files."""

    def __init__(self, directory: Path = DEFAULT_OUTBOX_DIR, private_root: Path | None = None) -> None:
        """``private_root``: the directory that gets the ``.gitignore`` of ``*`` (default: the
        state directory when ``directory`` is inside it, else ``directory`` itself)."""
        self.directory = Path(directory)
        if private_root is None:
            inside = [d for d in (self.directory, *self.directory.parents) if d.name == STATE_DIRECTORY.name]
            private_root = inside[0] if inside else self.directory
        self.private_root = private_root
        self._lock = threading.Lock()
        self._made = False

    def __repr__(self) -> str:
        return f"MaildirSink({str(self.directory)!r})"

    @property
    def mail_dir(self) -> Path:
        return self.directory / "mail"

    @property
    def sms_file(self) -> Path:
        return self.directory / "sms.jsonl"

    def send(self, message: EmailMessage | SmsMessage) -> Receipt:
        try:
            if isinstance(message, SmsMessage):
                return self._sms(message)
            return self._mail(message)
        except OSError as exc:  # a full disk, a read-only or removed directory: try again later
            self._made = False  # and make the directories again then
            raise TemporaryDeliveryError(
                f"cannot write to the local outbox {self.directory}: {exc.strerror or exc}"
            ) from None

    def close(self) -> None:
        """Nothing is held open between sends."""

    def _make_directory(self) -> None:
        """The sink's directories (its private root ignored by git), made once per sink and
        under the lock: the dispatcher's threads send at once, and ``Maildir(create=True)``
        fails with "File exists" when two threads create the same directory."""
        with self._lock:
            if not self._made:
                ensure_private_dir(self.private_root)
                self.directory.mkdir(parents=True, exist_ok=True)
                mailbox.Maildir(self.mail_dir, create=True)
                self._made = True

    def _mail(self, message: EmailMessage) -> Receipt:
        utf8 = not (message.to.address.isascii() and message.sender.address.isascii())
        data = to_mime(message, utf8=utf8).replace(b"\r\n", b"\n")  # a maildir file has local line ends
        self._make_directory()
        box = mailbox.Maildir(self.mail_dir, create=False)  # writes tmp/, then renames into new/
        key = box.add(data)
        return Receipt(
            provider_id=key,
            detail=f"written to {self.mail_dir / 'new' / key}",
            extra={"message_id": message_id_header(message)},
        )

    def _sms(self, message: SmsMessage) -> Receipt:
        ident = uuid.uuid4().hex
        line = {
            "id": ident,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "to": message.to,
            "sender": message.sender,
            "text": message.text,
            "reference": message.reference,
            "segments": message.segments,
            "encoding": message.encoding,
        }
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        self._make_directory()
        with self._lock:
            fd = os.open(self.sms_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    written = os.write(fd, data)
                    if written != len(data):  # pragma: no cover - a full disk mid-line
                        os.ftruncate(fd, os.fstat(fd).st_size - written)
                        raise OSError(28, "short write")
                finally:
                    if fcntl is not None:
                        with contextlib.suppress(OSError):
                            fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return Receipt(provider_id=ident, detail=f"appended to {self.sms_file}")
