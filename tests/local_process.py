"""`sensormail local` as a long-running process for the outbox tests: started with the page on a
free port, its printed SMTP settings read back, emails sent to it as a device would, stopped with
SIGTERM. Also builds the emails that reach the outcomes the samples do not (quarantine, DLQ)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from worker.local.run import DEFAULT_INTAKE, LOCAL_DEVICE_KEY, send_over_smtp, settings_region
from worker.ops.smtp_credentials import device_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRun:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", "local", "--smtp-port", "0", "--web-port", str(self.web_port), *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.errors: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.output, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors, None), daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        self.smtp_port = int(self.wait_for(r"port (\d+) \(STARTTLS\)")[1])
        self.cafile = self.wait_for(r"certificate .*: (\S+)$")[1]
        self.page = self.wait_for(r"outbox page \(this machine only\): (\S+)")[1]

    @staticmethod
    def _read(stream: Any, into: list[str], lines: queue.Queue[str] | None) -> None:
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    raise AssertionError(f"sensormail local exited {self.process.returncode}:\n{self.log()}")
                continue
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r} in time:\n{self.log()}")

    def log(self) -> str:
        return "".join(self.output) + "\n--- stderr ---\n" + "".join(self.errors[-40:])

    def send(self, path: Path) -> None:
        """As a device: STARTTLS with the printed certificate, AUTH with the local device's settings."""
        region = settings_region(self.env)
        device = device_settings(*LOCAL_DEVICE_KEY, region, self.env.get("SENSORMAIL_LOCAL_INTAKE", DEFAULT_INTAKE),
                                 host="127.0.0.1")
        context = ssl.create_default_context(cafile=self.cafile)
        send_over_smtp(self.smtp_port, DEFAULT_INTAKE, path, device, context)

    def get(self, path: str, **headers: str) -> Any:
        request = urllib.request.Request(self.base + path, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local page
            body = response.read()
            return json.loads(body) if response.headers.get_content_type() == "application/json" else body

    def post(self, path: str, **headers: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method="POST", headers=headers, data=b"")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader, stream in zip(self.readers, (self.process.stdout, self.process.stderr)):
            reader.join(timeout=10)
            if stream is not None:
                stream.close()
        return self.process.returncode


def local_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    return env


def quarantined_email(path: Path) -> Path:
    """From a sender outside SENSORMAIL_ALLOWED_SENDERS=devices.example.com: quarantined."""
    path.write_bytes(
        b"From: Intruder <intruder@elsewhere.example>\r\nTo: intake-7f3k@mail.example.com\r\n"
        b"Subject: Totally a pump alarm\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\n\r\n"
        b"not stored\r\n--b--\r\n"
    )
    return path


def malformed_email(path: Path, depth: int = 40) -> Path:
    """Multiparts nested deeper than max_depth (32): malformed, so the DLQ with the reason."""
    head = b"From: Pump Station 7 <station7@devices.example.com>\r\nSubject: Nested too deep\r\nMIME-Version: 1.0\r\n"
    body = b"Content-Type: text/plain\r\n\r\n:Email_Rxers_Code:ops@example.com:Email_Rxers_Code:\r\n"
    for n in range(depth):
        body = (f"Content-Type: multipart/mixed; boundary=\"n{n}\"\r\n\r\n--n{n}\r\n".encode()
                + body + f"\r\n--n{n}--\r\n".encode())
    path.write_bytes(head + body)
    return path
