"""opencv-doc sample clips: ar + tar.xz parsing, sha256 checks, one clear error; no network (local .deb)."""

import gzip
import hashlib
import io
import tarfile

import pytest

from dataset_builder.io.inputs import full_hash
from dataset_builder.samples import opencv_clips as oc


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def fake_deb(tmp_path):
    clip, licence = b"not really a video" * 7, b"License: Apache-2.0 AND BSD-3-Clause\n"
    packed = gzip.compress(clip)
    data = _tar_xz({"./usr/share/doc/x/other.txt": b"skip me", "./usr/share/doc/x/clip.mp4.gz": packed,
                    "./usr/share/doc/x/copyright": licence})
    deb = tmp_path / "x.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({}), "data.tar.xz": data}))
    members = (oc.Member("clip.mp4", "./usr/share/doc/x/clip.mp4.gz", hashlib.sha256(packed).hexdigest(), True),
               oc.Member("LICENSE.txt", "./usr/share/doc/x/copyright", hashlib.sha256(licence).hexdigest()))
    return deb, members, clip, licence


def test_extract_verifies_and_gunzips(fake_deb, tmp_path):
    deb, members, clip, licence = fake_deb
    out = oc.extract(deb, tmp_path / "cache", members, full_hash(deb))
    assert [p.name for p in out] == ["clip.mp4", "LICENSE.txt"]
    assert (tmp_path / "cache" / "clip.mp4").read_bytes() == clip
    assert (tmp_path / "cache" / "LICENSE.txt").read_bytes() == licence
    assert not list((tmp_path / "cache").glob("*.part"))


def test_bad_package_sha256_is_one_clear_error_and_writes_nothing(fake_deb, tmp_path):
    deb, members, _, _ = fake_deb
    with pytest.raises(oc.SampleClipError, match="sha256 mismatch for .*x.deb.*nothing written"):
        oc.extract(deb, tmp_path / "cache", members)  # the real package's sha256
    assert not (tmp_path / "cache").exists()
    with pytest.raises(oc.SampleClipError, match="sha256 mismatch"):
        oc.fetch(tmp_path / "cache", deb=deb)


def test_bad_member_sha256_and_missing_member(fake_deb, tmp_path):
    deb, members, _, _ = fake_deb
    bad = (oc.Member("clip.mp4", members[0].path, "0" * 64, True),)
    with pytest.raises(oc.SampleClipError, match="sha256 mismatch for ./usr/share/doc/x/clip.mp4.gz"):
        oc.extract(deb, tmp_path / "c1", bad, full_hash(deb))
    assert not (tmp_path / "c1" / "clip.mp4").exists()
    gone = (oc.Member("y.mp4", "./usr/share/doc/x/y.mp4", "0" * 64),)
    with pytest.raises(oc.SampleClipError, match="lacks"):
        oc.extract(deb, tmp_path / "c2", gone, full_hash(deb))


def test_not_a_deb_and_unreachable_url(tmp_path):
    junk = tmp_path / "junk.deb"
    junk.write_bytes(b"hello")
    with pytest.raises(oc.SampleClipError, match="not a .deb"):
        oc.ar_member(junk, "data.tar.xz")
    with pytest.raises(oc.SampleClipError, match="could not download .*--opencv-deb"):
        oc.fetch(tmp_path / "cache", url="http://127.0.0.1:9/none.deb", timeout=5)


def test_fetch_skips_when_cached(tmp_path):
    for m in oc.MEMBERS:
        (tmp_path / m.name).write_bytes(b"cached")
    assert [p.name for p in oc.fetch(tmp_path, url="http://127.0.0.1:9/none.deb")] == [m.name for m in oc.MEMBERS]
