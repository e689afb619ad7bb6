"""Where `envelope get -o PATH` writes plaintext: never where another user points it, nothing left by a crash,
special files written in place, create-only unless --overwrite, long names.

Most cases run the command in-process (`envelope_cli.main.main`) with the keystore's Decrypt counted, so
"refused before any decryption" is checked, not assumed. "Another user" is simulated as root does it:
`os.lchown` of a link to a different uid, inside a sticky 0o1777 directory. The crash tests run the real
command in a child that pauses at a chosen point (after the first plaintext write) until the parent has
looked and SIGKILLed it: no sleeps.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envelope.kms import LocalKms
from envelope_cli import files
from envelope_cli.files import prepare_output
from envelope_cli.main import main
from tests.test_cli import REPO, Cli, cli_command

OTHER_UID = 4242  # "another user": no such account is needed, only a uid that is not ours
MiB = 1024 * 1024
ACCESS, NOT_FOUND, EXISTS, USAGE = 7, 4, 5, 2

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="simulating another user's file needs chown (root)")


class World:
    """A keystore, a container `c` holding object `x`, and every Decrypt the keystore serves, counted."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.decrypts = 0
        original = LocalKms.decrypt

        def counting(kms: LocalKms, *args: Any, **kwargs: Any) -> Any:
            self.decrypts += 1
            return original(kms, *args, **kwargs)

        monkeypatch.setattr(LocalKms, "decrypt", counting)
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        assert self("key", "create", "--alias", "alias/k") == 0
        assert self("create", "c", "--key", "alias/k") == 0
        (tmp_path / "plain.txt").write_bytes(b"the plaintext")
        assert self("put", "c", "x", "plain.txt") == 0
        self.decrypts = 0

    def __call__(self, *argv: str) -> int:
        try:
            code = main(["--kms", f"local:{self.tmp / 'keystore'}", "-q", *argv])
        except SystemExit as e:
            code = int(e.code or 0)
        self.err = self.capsys.readouterr().err
        return code


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> World:
    return World(tmp_path, monkeypatch, capsys)


def sticky_dir(path: Path) -> Path:
    path.mkdir()
    path.chmod(0o1777)  # like /tmp
    return path


def other_users_link(link: Path, target: Path) -> None:
    link.symlink_to(target)
    os.lchown(link, OTHER_UID, OTHER_UID)


# -- 1. symlinks: never redirected by another user ------------------------------------------------------


@needs_root
def test_another_users_link_in_a_sticky_directory_is_refused_before_any_decrypt(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    victim = world.tmp / "victim.txt"
    victim.write_bytes(b"the victim's file")
    other_users_link(shared / "out", victim)

    assert world("get", "c", "x", "-o", str(shared / "out"), "--overwrite") == ACCESS
    assert "refusing to follow a symbolic link owned by another user" in world.err
    assert victim.read_bytes() == b"the victim's file" and (shared / "out").is_symlink()
    assert world.decrypts == 0
    # A link to a file that does not exist yet (create-only) is refused just the same.
    other_users_link(shared / "new", world.tmp / "planted.txt")
    assert world("get", "c", "x", "-o", str(shared / "new")) == ACCESS
    assert not (world.tmp / "planted.txt").exists() and world.decrypts == 0


@needs_root
def test_another_users_directory_link_in_a_sticky_directory_is_refused(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    private = world.tmp / "private"
    private.mkdir()
    other_users_link(shared / "dir", private)
    assert world("get", "c", "x", "-o", str(shared / "dir" / "out")) == ACCESS
    assert list(private.iterdir()) == [] and world.decrypts == 0


@needs_root
def test_links_the_kernel_rule_allows_are_followed(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    # Our own link in a sticky directory.
    (shared / "mine").symlink_to(world.tmp / "mine.txt")
    assert world("get", "c", "x", "-o", str(shared / "mine")) == 0
    assert (world.tmp / "mine.txt").read_bytes() == b"the plaintext" and (shared / "mine").is_symlink()
    # A link owned by the sticky directory's owner.
    owned = sticky_dir(world.tmp / "owned")
    os.chown(owned, OTHER_UID, OTHER_UID)
    other_users_link(owned / "out", world.tmp / "owners.txt")
    assert world("get", "c", "x", "-o", str(owned / "out")) == 0
    assert (world.tmp / "owners.txt").read_bytes() == b"the plaintext"
    # Another user's link in a directory that is not sticky and world-writable (they could not plant it).
    plain = world.tmp / "plain"
    plain.mkdir()
    other_users_link(plain / "out", Path("..") / "relative.txt")
    assert world("get", "c", "x", "-o", "plain/out") == 0
    assert (world.tmp / "relative.txt").read_bytes() == b"the plaintext"


def test_link_loops_and_dangling_directories_fail_cleanly(world: World) -> None:
    (world.tmp / "a").symlink_to("b")
    (world.tmp / "b").symlink_to("a")
    assert world("get", "c", "x", "-o", "a") == ACCESS and "Too many levels" in world.err
    assert world("get", "c", "x", "-o", "missing-dir/out") == NOT_FOUND
    assert world("get", "c", "x", "-o", "plain.txt/out") == ACCESS  # not a directory
    assert world("get", "c", "x", "-o", ".") == ACCESS and "Is a directory" in world.err
    assert world.decrypts == 0


# -- 3. special files and the standard descriptors: written in place, never renamed over -----------------


def test_special_files_are_written_in_place(world: World) -> None:
    fifo = world.tmp / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert world("get", "c", "x", "-o", str(fifo)) == 0  # no --overwrite needed: nothing is replaced
        assert os.read(reader, 100) == b"the plaintext"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dev_stdout_appends_to_the_shells_redirect_and_works_through_a_pipe(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'keystore'}")
    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    cli("put", "c", "x", "-", stdin=b"decrypted line\n")
    log = tmp_path / "log.txt"
    log.write_bytes(b"earlier log line\n")
    log.chmod(0o644)
    inode = log.stat().st_ino
    command = " ".join([*cli_command(), *cli.options, "get", "c", "x", "-o"])
    for name in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        subprocess.run(["sh", "-c", f"{command} {name} >> log.txt"], cwd=tmp_path, env=cli.env, check=True, timeout=60)
    assert log.read_bytes() == b"earlier log line\n" + b"decrypted line\n" * 3  # appended, no status line
    assert log.stat().st_ino == inode and stat.S_IMODE(log.stat().st_mode) == 0o644
    assert cli("get", "c", "x", "-o", "/dev/stdout").stdout == b"decrypted line\n"  # a pipe
    # Any other open descriptor: written through it, the status line stays on stdout.
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.run(
            [*cli_command(), *cli.options, "get", "c", "x", "-o", f"/dev/fd/{write_end}"],
            cwd=tmp_path,
            env=cli.env,
            pass_fds=(write_end,),
            capture_output=True,
            timeout=60,
        )
        os.close(write_end)
        assert proc.returncode == 0 and os.read(read_end, 100) == b"decrypted line\n"
        assert proc.stdout.startswith(b"get x: 15 bytes")
    finally:
        os.close(read_end)
    cli("get", "c", "x", "-o", "/dev/fd/1000", code=ACCESS)  # not open: refused before decrypting


def test_double_dash_ends_the_options(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'keystore'}")
    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    (tmp_path / "f.txt").write_bytes(b"f")
    (tmp_path / "-f.txt").write_bytes(b"dash")
    # Without "--", --overwrite is the option and f.txt the NAME, so FILE is missing: a usage error.
    cli("put", "c", "--overwrite", "f.txt", code=USAGE)
    cli("put", "c", "--", "--overwrite", "f.txt")
    cli("put", "c", "n", "--", "-f.txt")
    assert cli.json("ls", "c") == ["--overwrite", "n"]
    assert cli("get", "c", "--", "--overwrite").stdout == b"f"
    assert cli("get", "c", "n").stdout == b"dash"
    assert '"--"' in cli("put", "--help").stdout.decode()


# -- 4. existing files and long names ------------------------------------------------------------------


@needs_root
def test_an_existing_file_needs_overwrite_and_keeps_its_mode_only_if_it_is_ours(world: World) -> None:
    out = world.tmp / "out.txt"
    out.write_bytes(b"previous")
    out.chmod(0o640)
    assert world("get", "c", "x", "-o", "out.txt") == EXISTS and "--overwrite" in world.err
    assert out.read_bytes() == b"previous" and world.decrypts == 0
    assert world("get", "c", "x", "-o", "out.txt", "--overwrite") == 0
    assert out.read_bytes() == b"the plaintext" and stat.S_IMODE(out.stat().st_mode) == 0o640  # like cp
    # Someone else's file: the plaintext never takes their mode or becomes theirs.
    os.chown(out, OTHER_UID, OTHER_UID)
    out.chmod(0o666)
    assert world("get", "c", "x", "-o", "out.txt", "--overwrite") == 0
    st = out.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o600)
    assert sorted(p.name for p in world.tmp.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named-temp"])
def test_a_255_byte_name_works_new_and_replaced(world: World, monkeypatch: pytest.MonkeyPatch, anonymous: bool) -> None:
    if not anonymous:
        monkeypatch.setattr(files, "_O_TMPFILE", None)
    name = "é" * 127 + "x"  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    assert world("get", "c", "x", "-o", name) == 0
    assert world("get", "c", "x", "-o", name, "--overwrite") == 0, world.err
    assert (world.tmp / name).read_bytes() == b"the plaintext"
    assert [p.name for p in world.tmp.iterdir() if p.name.startswith(".")] == []


def test_the_named_temp_fallback_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_O_TMPFILE", None)
    target = tmp_path / "out"
    with prepare_output(str(target), overwrite=False) as output, output.open() as f:
        f.write(b"data")
        [temp] = [p.name for p in tmp_path.iterdir()]
        assert files.TEMP_NAME.match(temp)
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(RuntimeError), prepare_output(str(target), overwrite=True) as output, output.open() as f:
        f.write(b"partial")
        raise RuntimeError("failed mid-way")
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["out"]


# -- 2. SIGKILL mid-get --------------------------------------------------------------------------------

CHILD = """
import sys
from envelope_cli import data, files
from envelope_cli.main import main

if sys.argv[1] == "named":
    files._O_TMPFILE = None
original = data._write_all
paused = False

def write_then_pause(sink, view):
    global paused
    original(sink, view)
    if not paused:
        paused = True
        sink.flush()
        print("paused", file=sys.stderr, flush=True)
        sys.stdin.readline()  # blocks until the parent's SIGKILL

data._write_all = write_then_pause
sys.exit(main(sys.argv[2:]))
"""


def _killed_mid_get(tmp_path: Path, mode: str, cli: Cli, output: Path) -> tuple[list[str], list[str]]:
    """Run `get -o output` in a child, pause it after its first plaintext write, SIGKILL it.
    Returns (the output directory's names while paused, the names of the child's open files then)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), mode, *cli.options, "get", "c", "big", "-o", str(output)],
        cwd=tmp_path,
        env={**cli.env, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line == b"paused\n", line + proc.stderr.read()
        while_paused = sorted(p.name for p in output.parent.iterdir())
        open_files = [os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return while_paused, open_files


@pytest.fixture
def big_object(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'keystore'}")
    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    cli("put", "c", "big", "-", stdin=os.urandom(3 * MiB))
    (tmp_path / "out").mkdir()
    return cli


def test_sigkill_mid_get_leaves_nothing_where_o_tmpfile_works(tmp_path: Path, big_object: Cli) -> None:
    output = tmp_path / "out" / "big.bin"
    while_paused, open_files = _killed_mid_get(tmp_path, "anonymous", big_object, output)
    # The plaintext written so far sat in an unnamed file: nothing in the directory, before or after.
    assert while_paused == []
    assert any(f.startswith(str(tmp_path / "out") + "/#") and f.endswith("(deleted)") for f in open_files)
    assert list((tmp_path / "out").iterdir()) == []


def test_sigkill_mid_get_without_o_tmpfile_leaves_a_temp_file_gc_removes(tmp_path: Path, big_object: Cli) -> None:
    cli = big_object
    output = tmp_path / "out" / "big.bin"
    while_paused, _ = _killed_mid_get(tmp_path, "named", cli, output)
    [temp] = while_paused
    assert files.TEMP_NAME.match(temp) and temp.startswith(".big.bin.")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [temp]  # the crash left it

    listed = cli.json("gc", "--temp-files", "out", "--older-than", "0s")
    assert listed == {"directory": "out", "stale": [str(Path("out") / temp)], "removed": 0}
    assert [p.name for p in (tmp_path / "out").iterdir()] == [temp]  # dry run by default
    assert cli.json("gc", "--temp-files", "out", "--older-than", "1h")["stale"] == []  # too recent
    removed = cli.json("gc", "--temp-files", "out", "--older-than", "0s", "--yes")
    assert removed["removed"] == 1
    assert list((tmp_path / "out").iterdir()) == []


def test_gc_never_removes_a_live_writers_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "_O_TMPFILE", None)
    with prepare_output(str(tmp_path / "out"), overwrite=False) as output, output.open() as f:
        f.write(b"in progress")
        [temp] = list(tmp_path.iterdir())
        os.utime(temp, (0, 0))  # old, but locked by this live writer
        assert files.stale_temp_files(str(tmp_path), 0, remove=False) == []
        assert files.stale_temp_files(str(tmp_path), 0, remove=True) == []
        assert temp.exists()
    assert (tmp_path / "out").read_bytes() == b"in progress"


def test_gc_of_a_local_container_uses_the_storage_layers_cleanup(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "--kms", f"local:{tmp_path / 'keystore'}")
    cli("key", "create", "--alias", "alias/k")
    cli("create", "c", "--key", "alias/k")
    cli("put", "c", "logs/a", "-", stdin=b"kept")
    stray = tmp_path / "c" / "objects" / "logs" / ".b.0123456789abcdef.tmp"  # a put killed mid-object
    stray.write_bytes(b"ciphertext of a crashed put")
    os.utime(stray, (0, 0))
    listed = cli.json("gc", "c")  # default --older-than 1h; dry run
    assert listed["stale"] == [str(stray)] and listed["removed"] == 0 and stray.exists()
    assert cli.json("gc", "c", "--yes")["removed"] == 1 and not stray.exists()
    assert cli("get", "c", "logs/a").stdout == b"kept"
    cli("gc", "c", "--older-than", "soon", code=USAGE)
    cli("gc", code=USAGE)  # neither a container nor --temp-files
    cli("gc", "s3://bucket/c", code=USAGE)  # local only (S3: the bucket's lifecycle rule)
    cli("gc", "not-a-container", code=NOT_FOUND)
    cli("gc", "--temp-files", "no-such-dir", code=NOT_FOUND)


# --- attacker review (second pass): FIFOs, `put` inputs and `gc` directories in shared places --------


@needs_root
def test_another_users_fifo_in_a_sticky_directory_gets_no_plaintext(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    fifo = shared / "report.txt"
    os.mkfifo(fifo)
    os.chown(fifo, 4242, 4242)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the other user listening (never blocks the test)
    try:
        assert world("get", "c", "x", "-o", str(fifo)) == ACCESS
        assert "FIFO or device owned by another user" in world.err
        assert os.read(reader, 100) == b"", "nothing was written into it"
    finally:
        os.close(reader)
    assert world.decrypts == 0


@needs_root
def test_put_does_not_read_through_another_users_link(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    secret = world.tmp / "root_only.txt"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    other_users_link(shared / "upload.csv", secret)
    assert world("put", "c", "upload", str(shared / "upload.csv")) == ACCESS
    assert "symbolic link owned by another user" in world.err


@needs_root
def test_gc_does_not_follow_another_users_link_to_a_directory(world: World) -> None:
    shared = sticky_dir(world.tmp / "shared")
    private = world.tmp / "private"
    private.mkdir()
    journal = private / ".db.0123456789abcdef.tmp"  # matches the temp-name pattern; not ours to delete
    journal.write_bytes(b"someone's journal")
    os.utime(journal, (0, 0))
    other_users_link(shared / "outdir", private)
    assert world("gc", "--temp-files", str(shared / "outdir"), "--older-than", "0s", "--yes") == ACCESS
    assert journal.exists()
