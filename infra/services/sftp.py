"""An OpenSSH sshd serving SFTP on 127.0.0.1, run as the unprivileged service user.

A non-root sshd can only log in the user it runs as; that is all tests need. Both key pairs
(the server's host key and the tests' client key) are generated once with ``ssh-keygen``
and kept in the state dir, so the host key stays pinnable across restarts.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from infra._proc import (
    InfraError,
    ServiceUser,
    cmdline,
    failure,
    pid_alive,
    read_pid,
    terminate,
    wait_until,
)
from infra.layout import Layout
from infra.services.base import ServiceStatus

NAME = "sftp"


def sshd_binary() -> Path:
    """Return the sshd executable ($ORDERFLOW_SSHD or Debian's /usr/sbin/sshd)."""
    path = Path(os.environ.get("ORDERFLOW_SSHD", "/usr/sbin/sshd"))
    if not path.exists():
        raise InfraError(
            f"sftp: {path} not found (install the Debian package `openssh-server`, "
            "e.g. `make deps-system`, or set ORDERFLOW_SSHD)"
        )
    return path


def host_key_path(layout: Layout) -> Path:
    """Return the server's ed25519 host private key path."""
    return layout.sftp_root / "ssh_host_ed25519_key"


def config_path(layout: Layout) -> Path:
    """Return the sshd_config path."""
    return layout.sftp_root / "sshd_config"


def host_key_line(layout: Layout) -> str:
    """Return the server's public host key as ``ssh-ed25519 AAAA...`` (no comment)."""
    pub = host_key_path(layout).with_suffix(".pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def keygen(path: Path, comment: str) -> None:
    """Create an ed25519 key pair at ``path`` / ``path.pub`` unless both exist."""
    if path.exists() and path.with_suffix(".pub").exists():
        return
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise InfraError(f"sftp: ssh-keygen failed: {proc.stderr.strip()}")


def _sshd_config(layout: Layout, user: ServiceUser, port: int) -> str:
    return f"""\
# Written by `python -m infra`: a DEV/TEST SFTP server. Rewritten on every start.
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key_path(layout)}
PidFile {layout.sftp_root / "sshd.pid"}
AuthorizedKeysFile {layout.sftp_root / "authorized_keys"}
AllowUsers {user.name}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
MaxStartups 200:30:400
MaxSessions 50
LoginGraceTime 30
LogLevel INFO
Subsystem sftp internal-sftp
"""


def prepare(layout: Layout, user: ServiceUser, port: int) -> None:
    """Create keys, authorized_keys, the dropzone and the config (idempotent)."""
    layout.sftp_root.mkdir(parents=True, exist_ok=True)
    layout.keys.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.keys, 0o700)
    host_key = host_key_path(layout)
    keygen(host_key, "orderflow-infra-host")
    keygen(layout.client_key, "orderflow-infra-client")
    os.chmod(host_key, 0o600)
    os.chmod(layout.client_key, 0o600)
    authorized = layout.sftp_root / "authorized_keys"
    authorized.write_text(layout.client_key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o644)
    layout.sftp_dropzone.mkdir(exist_ok=True)
    os.chmod(layout.sftp_dropzone, 0o775)  # noqa: S103 - a shared upload dir
    config = config_path(layout)
    config.write_text(_sshd_config(layout, user, port))
    user.chown(
        layout.sftp_root,
        host_key,
        host_key.with_suffix(".pub"),
        authorized,
        layout.sftp_dropzone,
        config,
    )


def _running_pid(layout: Layout) -> int | None:
    pid = read_pid(layout.sshd_pid)
    if pid is None or not pid_alive(pid):
        return None
    argv = cmdline(pid)
    if not argv or "sshd" not in argv[0]:
        return None
    return pid


def status(layout: Layout) -> ServiceStatus:
    """Report whether sshd runs, and where."""
    pid = _running_pid(layout)
    port = layout.read_ports().get("sftp")
    return ServiceStatus(NAME, pid is not None, pid, port, f"dropzone {layout.sftp_dropzone}")


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def check_login(layout: Layout, user: ServiceUser, port: int) -> None:
    """Log in with the client key, pinning the host key, and stat the dropzone."""
    import paramiko

    expected = host_key_line(layout).split()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            if transport.get_remote_server_key().get_base64() != expected:
                raise InfraError(f"sftp: host key on port {port} is not ours")
            key = paramiko.Ed25519Key.from_private_key_file(str(layout.client_key))
            transport.auth_publickey(user.name, key)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise InfraError("sftp: could not open the sftp subsystem")
            with sftp:
                sftp.stat(str(layout.sftp_dropzone))
        finally:
            transport.close()


def ensure(layout: Layout, user: ServiceUser, port: int, timeout: float = 30) -> int:
    """Start sshd unless it already runs; check a key login; return its port."""
    pid = _running_pid(layout)
    if pid is None:
        prepare(layout, user, port)
    else:
        running_port = layout.read_ports().get("sftp", port)
        try:
            check_login(layout, user, running_port)
        except Exception as exc:
            raise failure(NAME, f"running but login fails: {exc}", layout.sshd_log) from exc
        return running_port
    argv = [str(sshd_binary()), "-D", "-e", "-f", str(config_path(layout))]
    pid = user.spawn_detached(argv, layout.sshd_log)
    layout.sshd_pid.write_text(f"{pid}\n")

    def alive() -> bool:
        return pid_alive(pid)

    if not wait_until(lambda: _banner(port), timeout, alive=alive, interval=0.05):
        why = "exited during startup" if not alive() else f"no SSH banner on {port}"
        raise failure(NAME, why, layout.sshd_log)
    try:
        check_login(layout, user, port)
    except Exception as exc:
        raise failure(NAME, f"key login failed: {exc}", layout.sshd_log) from exc
    return port


def stop(layout: Layout, timeout: float = 10) -> bool:
    """Stop sshd by its pid file; return True if it was running."""
    pid = _running_pid(layout)
    if pid is None:
        layout.sshd_pid.unlink(missing_ok=True)
        return False
    terminate(pid, timeout)
    layout.sshd_pid.unlink(missing_ok=True)
    return True
