import subprocess
import sys
from pathlib import Path

import pytest

from workflows._cli import run_cli

REPO = Path(__file__).resolve().parents[1]


def test_user_errors_print_one_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.delenv("LAYERFLOW_DEBUG", raising=False)

    def main():
        raise FileNotFoundError("model directory /m/CogVideoX-2b is missing")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model directory /m/CogVideoX-2b is missing") and "Traceback" not in err
    monkeypatch.setenv("LAYERFLOW_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_cli(main)


def test_programming_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 // 0)


def test_build_coarse_cli_rejects_a_bad_config_cleanly():
    proc = subprocess.run([sys.executable, "workflows/build_coarse.py", "--config", "configs/cpu.yaml",
                           "clip.height=481"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "must be even" in proc.stderr and "Traceback" not in proc.stderr


def test_second_build_on_a_held_output_dir_fails_at_once_with_one_line(tmp_path, bikes_path):
    """Old main: two builds into one dir both exited 0 while one build's samples were lost."""
    from dataset_builder.io.shard_writer import OutputDir

    out = tmp_path / "out"
    with OutputDir(out):  # this (live) process holds the lease, as a running build would
        proc = subprocess.run([sys.executable, "workflows/build_coarse.py", "--config", "configs/cpu.yaml",
                               f"input.paths=[{bikes_path}]", f"output.dir={out}", "--local"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is in use by build" in proc.stderr and f":{__import__('os').getpid()}" in proc.stderr
    assert not list((out / "shards").iterdir())


def test_full_disk_is_one_line_and_exit_2(capsys, monkeypatch):
    import errno

    from dataset_builder.io.shard_writer import DiskFull

    monkeypatch.delenv("LAYERFLOW_DEBUG", raising=False)

    def main():
        raise DiskFull(errno.ENOSPC, "output filesystem full while writing /o (partial files were removed)")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main)
    assert exit_info.value.code == 2 and "output filesystem full" in capsys.readouterr().err
