"""A corpus of hostile and broken inputs for ``agekit predict`` and ``agekit prepare`` (made in a folder, in ~1 s).

``make_corpus(root)`` writes small generated faces in every format and pixel layout agekit reads
(8/16-bit, float, alpha, grey, palette, CMYK, EXIF-rotated, ...), under odd names (newlines, ANSI
escapes, bytes that are not UTF-8, trailing spaces, ...), next to entries that must each be named
with one reason: pixel bombs that are small on disk, truncated and zero-byte files, FIFOs, links to
``/dev/zero``, symlink loops, dangling links, folders named ``x.jpg``, unreadable files and folders,
unsupported formats, videos and documents. It returns a :class:`Corpus`: the command-line inputs,
and for every entry (as ``agekit predict`` names it) whether it is a good photo, a bad entry with
the words its reason must contain, or one that may go either way (damaged data a decoder may
still read).

Run ``python tests/badinputs.py DIR`` to write one and print its summary.
"""
from __future__ import annotations

import io
import os
import socket
import stat
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, features

GOOD, BAD, EITHER = "good", "bad", "either"


@dataclass
class Corpus:
    root: Path
    inputs: list[str] = field(default_factory=list)  # command-line arguments, in order
    expect: dict[str, tuple[str, str]] = field(default_factory=dict)  # source -> (GOOD/BAD/EITHER, reason words)
    cleanup: list[object] = field(default_factory=list)  # sockets to close

    @property
    def good(self) -> list[str]:
        return [s for s, (k, _) in self.expect.items() if k == GOOD]

    @property
    def bad(self) -> dict[str, str]:
        return {s: why for s, (k, why) in self.expect.items() if k == BAD}

    def close(self) -> None:
        for s in self.cleanup:
            s.close()


def faces(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    from agekit.export.onnx import synthetic_faces

    return synthetic_faces(n, size, seed)


def _pil_bytes(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, colour: int = 0, full: bool = True) -> bytes:
    """A PNG declaring ``width`` x ``height`` (8-bit; ``colour`` 0 grey, 2 RGB). ``full``: every row is there,
    compressed zeros streamed through zlib (20000x20000 grey: ~390 KB); else the header and one row only."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    row = bytes(1 + width * (3 if colour == 2 else 1))
    z = zlib.compressobj(9)
    parts = []
    block = row * max(1, (1 << 20) // len(row))
    rows_per_block = len(block) // len(row)
    left = height if full else 1
    while left > 0:
        k = min(left, rows_per_block)
        parts.append(z.compress(block if k == rows_per_block else row * k))
        left -= k
    parts.append(z.flush())
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
            + _png_chunk(b"IEND", b""))


def _tiff(width: int, height: int, strip: bytes) -> bytes:
    """A minimal little-endian grey 8-bit TIFF declaring ``width`` x ``height`` with one strip."""
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 0), (278, 4, 1, height), (279, 4, 1, len(strip))]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(tags) + 4
    out = b"II*\x00" + struct.pack("<I", ifd_off) + struct.pack("<H", len(tags))
    for tag, typ, count, value in tags:
        if tag == 273:
            value = data_off
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + struct.pack("<I", 0) + strip


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0/SOF2) declaring another size."""
    i = 2
    while i < len(jpeg):
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[:i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9:]
        i += 2 + length
    raise ValueError("no frame header")


def _webp_canvas(webp: bytes, width: int, height: int) -> bytes:
    """An extended (VP8X) WebP with its canvas size set to ``width`` x ``height``."""
    assert webp[12:16] == b"VP8X", "save the WebP with exif= to get a VP8X header"
    return webp[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") + webp[30:]


class _Writer:
    def __init__(self, corpus: Corpus, folder: Path):
        self.c, self.folder = corpus, folder
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes, kind: str, why: str = "") -> Path:
        p = self.folder / name
        with open(p, "wb") as f:
            f.write(data)
        self.c.expect[str(p)] = (kind, why)
        return p

    def mark(self, p: Path, kind: str, why: str = "") -> None:
        self.c.expect[str(p)] = (kind, why)


def make_corpus(root: str | os.PathLike, size: int = 48) -> Corpus:
    """Write the corpus under ``root`` (created); see the module docstring."""
    root = Path(root)
    c = Corpus(root)
    photos = root / "photos"
    w = _Writer(c, photos)
    imgs = faces(40, size, seed=3)
    pil = [Image.fromarray(a) for a in imgs]
    k = iter(range(1 << 30))

    def face() -> Image.Image:
        return pil[next(k) % len(pil)]

    # --- good photos: every format and pixel layout ---
    im = face()
    jpg = _pil_bytes(im, "JPEG", quality=90)
    w.put("plain.jpg", jpg, GOOD)
    w.put("progressive.jpg", _pil_bytes(face(), "JPEG", progressive=True), GOOD)
    w.put("grey.jpg", _pil_bytes(face().convert("L"), "JPEG"), GOOD)
    w.put("cmyk.jpg", _pil_bytes(face().convert("CMYK"), "JPEG"), GOOD)
    w.put("UPPER.JPG", _pil_bytes(face(), "JPEG"), GOOD)
    w.put("camera.jfif", _pil_bytes(face(), "JPEG"), GOOD)
    w.put("old.jpe", _pil_bytes(face(), "JPEG"), GOOD)
    w.put("tail-bytes.jpg", _pil_bytes(face(), "JPEG") + bytes(64), GOOD)
    rect = Image.fromarray(faces(1, size, seed=9)[0]).resize((size, size * 3 // 2))
    for o in range(1, 9):
        w.put(f"exif-orient{o}.jpg", _pil_bytes(rect, "JPEG", exif=_exif(o)), GOOD)
    w.put("bad-exif.jpg", _pil_bytes(face(), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff"), GOOD)
    w.put("rgb.png", _pil_bytes(face(), "PNG"), GOOD)
    w.put("rgba.png", _pil_bytes(face().convert("RGBA"), "PNG"), GOOD)
    w.put("grey.png", _pil_bytes(face().convert("L"), "PNG"), GOOD)
    w.put("grey-alpha.png", _pil_bytes(face().convert("LA"), "PNG"), GOOD)
    w.put("palette.png", _pil_bytes(face().convert("P"), "PNG"), GOOD)
    pt = face().convert("P")
    w.put("palette-transparent.png", _pil_bytes(pt, "PNG", transparency=0), GOOD)
    w.put("bilevel.png", _pil_bytes(face().convert("1"), "PNG"), GOOD)
    g16 = (np.asarray(face().convert("L"), np.uint16) * 257)
    w.put("grey16.png", _pil_bytes(Image.fromarray(g16), "PNG"), GOOD)
    w.put("exif-orient6.png", _pil_bytes(rect, "PNG", exif=_exif(6)), GOOD)
    w.put("exif-orient3.png", _pil_bytes(rect, "PNG", exif=_exif(3)), GOOD)
    w.put("anim.apng", _pil_bytes(face(), "PNG", save_all=True, append_images=[face()]), GOOD)
    w.put("lossy.webp", _pil_bytes(face(), "WEBP", quality=80), GOOD)
    w.put("lossless.webp", _pil_bytes(face(), "WEBP", lossless=True), GOOD)
    w.put("alpha.webp", _pil_bytes(face().convert("RGBA"), "WEBP"), GOOD)
    w.put("exif-orient6.webp", _pil_bytes(rect, "WEBP", exif=_exif(6)), GOOD)
    w.put("exif-orient8.webp", _pil_bytes(rect, "WEBP", exif=_exif(8)), GOOD)
    w.put("single.gif", _pil_bytes(face(), "GIF"), GOOD)
    w.put("anim.gif", _pil_bytes(face(), "GIF", save_all=True, append_images=[face(), face()]), GOOD)
    w.put("transparent.gif", _pil_bytes(face().convert("P"), "GIF", transparency=0), GOOD)
    w.put("rgb.bmp", _pil_bytes(face(), "BMP"), GOOD)
    w.put("rgba.bmp", _pil_bytes(face().convert("RGBA"), "BMP"), GOOD)
    w.put("palette.bmp", _pil_bytes(face().convert("P"), "BMP"), GOOD)
    w.put("grey.bmp", _pil_bytes(face().convert("L"), "BMP"), GOOD)
    w.put("raw.tif", _pil_bytes(face(), "TIFF"), GOOD)
    w.put("lzw.tiff", _pil_bytes(face(), "TIFF", compression="tiff_lzw"), GOOD)
    w.put("deflate.tif", _pil_bytes(face(), "TIFF", compression="tiff_adobe_deflate"), GOOD)
    w.put("jpeg-in.tif", _pil_bytes(face(), "TIFF", compression="jpeg"), GOOD)
    w.put("grey.tif", _pil_bytes(face().convert("L"), "TIFF"), GOOD)
    w.put("grey16.tif", _pil_bytes(Image.fromarray(g16), "TIFF"), GOOD)
    w.put("cmyk.tif", _pil_bytes(face().convert("CMYK"), "TIFF"), GOOD)
    w.put("rgba.tif", _pil_bytes(face().convert("RGBA"), "TIFF"), GOOD)
    w.put("pages.tif", _pil_bytes(face(), "TIFF", save_all=True, append_images=[face()]), GOOD)
    w.put("exif-orient6.tif", _pil_bytes(rect, "TIFF", exif=_exif(6)), GOOD)
    w.put("exif-orient5.tif", _pil_bytes(rect, "TIFF", exif=_exif(5)), GOOD)
    w.put("binary.ppm", _pil_bytes(face(), "PPM"), GOOD)
    w.put("binary.pgm", _pil_bytes(face().convert("L"), "PPM"), GOOD)
    w.put("binary.pbm", _pil_bytes(face().convert("1"), "PPM"), GOOD)
    w.put("any.pnm", _pil_bytes(face(), "PPM"), GOOD)
    a = np.asarray(face().convert("L"))
    w.put("ascii.pgm", (f"P2\n{a.shape[1]} {a.shape[0]}\n255\n" + " ".join(map(str, a.ravel()))).encode(), GOOD)
    w.put("grey16.pgm", f"P5\n{a.shape[1]} {a.shape[0]}\n65535\n".encode() + (a.astype(">u2") * 257).tobytes(), GOOD)
    if features.check("avif"):
        w.put("photo.avif", _pil_bytes(face(), "AVIF"), GOOD)
    else:
        w.put("photo.avif", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", BAD, "unsupported format")
    # --- good photos under odd names ---
    odd = ["new\nline.jpg", "esc\x1b[31mred\x1b[0m.jpg", "bell\x07.jpg", "tab\tname.jpg", "cr\rname.jpg",
           "bytes-\udcff\udcfe.jpg", "latin1-caf\udce9.jpg", "trailing space.jpg ", " leading.jpg", "-dash.jpg",
           "comma,quote\".jpg", "semi;colon.jpg", "percent%s{0}.jpg", "back\\slash.jpg", "bidi-\u202egpj.exe.jpg",
           "zero-width\u200b.jpg", "visage-été-年齢.jpg", "emoji-\U0001f600.jpg", "#hash.jpg", "x" * 240 + ".jpg",
           "name-with-no-extension", "jpeg-named.png", "png-named.jpg", "a.jpg.txt"]
    for name in odd:
        data = _pil_bytes(face(), "PNG" if name == "png-named.jpg" else "JPEG")
        w.put(name, data, GOOD)
    w.put("dotted.JPEG", _pil_bytes(face(), "JPEG"), GOOD)
    # --- bad: pixel bombs, small on disk ---
    w.put("bomb-20000x20000.png", png_bomb(20000, 20000), BAD, "too many pixels")
    w.put("bomb-rgb-header.png", png_bomb(60000, 60000, colour=2, full=False), BAD, "too many pixels")
    w.put("bomb-tall.png", png_bomb(1, 100_000_000, full=False), BAD, "too many pixels")
    w.put("bomb-30000.jpg", _jpeg_with_size(jpg, 30000, 30000), BAD, "too many pixels")
    w.put("bomb-65500.jpg", _jpeg_with_size(jpg, 65500, 65500), BAD, "too many pixels")
    gif = bytearray(_pil_bytes(face(), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    w.put("bomb-screen.gif", bytes(gif), BAD, "too many pixels")
    bmp = bytearray(_pil_bytes(face(), "BMP"))
    bmp[18:26] = struct.pack("<ii", 40000, 40000)
    w.put("bomb.bmp", bytes(bmp), BAD, "")
    bmp2 = bytearray(_pil_bytes(face(), "BMP"))
    bmp2[18:26] = struct.pack("<ii", 12000, -12000)
    w.put("bomb-topdown.bmp", bytes(bmp2), BAD, "")
    w.put("bomb.webp", _webp_canvas(_pil_bytes(face(), "WEBP", exif=_exif(1)), 16384, 16384), BAD, "too many pixels")
    w.put("bomb.tif", _tiff(100_000, 100_000, bytes(64)), BAD, "too many pixels")
    w.put("bomb-wide.tif", _tiff(4_000_000_000, 1, bytes(64)), BAD, "")
    w.put("bomb.ppm", b"P6\n30000 30000\n255\n" + bytes(64), BAD, "too many pixels")
    w.put("bomb.pgm", b"P5\n99999999 99999999\n255\n" + bytes(16), BAD, "")
    w.put("zero-size.png", png_bomb(0, 0, full=False), BAD, "")
    # --- bad: pixel formats ---
    fl = np.asarray(face().convert("L"), np.float32) / 255.0
    w.put("float32.tif", _pil_bytes(Image.fromarray(fl, "F"), "TIFF"), BAD, "32-bit float")
    i32 = np.asarray(face().convert("L"), np.int32) * 100_000
    w.put("int32.tif", _pil_bytes(Image.fromarray(i32, "I"), "TIFF"), BAD, "32-bit integer")
    # --- bad: empty, truncated and damaged files ---
    for name in ("zero.jpg", "zero.png", "zero.webp", "zero-no-ext"):
        w.put(name, b"", BAD, "zero bytes")
    png = _pil_bytes(face(), "PNG")
    w.put("half.jpg", jpg[: len(jpg) // 2], BAD, "truncated")
    w.put("no-eoi.jpg", jpg[:-2], BAD, "truncated")
    w.put("header-only.jpg", jpg[:20], BAD, "truncated")
    w.put("soi-only.jpg", b"\xff\xd8", BAD, "truncated")
    w.put("half.png", png[: len(png) // 2], BAD, "truncated")
    w.put("no-iend.png", png[:-12], BAD, "truncated")
    w.put("signature-only.png", png[:8], BAD, "truncated")
    for name, fmt in (("half.gif", "GIF"), ("half.webp", "WEBP"), ("half.tif", "TIFF"), ("half.bmp", "BMP"),
                      ("half.ppm", "PPM")):
        data = _pil_bytes(face(), fmt)
        w.put(name, data[: len(data) // 2], BAD, "")
    crc = bytearray(png)
    crc[29] ^= 0xFF  # inside IHDR's CRC
    w.put("bad-crc.png", bytes(crc), BAD, "")
    mid = bytearray(jpg)
    mid[len(jpg) // 2: len(jpg) // 2 + 40] = os.urandom(40)
    w.put("garbled-scan.jpg", bytes(mid), EITHER, "")
    w.put("text.jpg", b"this is not an image\n", BAD, "not an image")
    w.put("page.png", b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", BAD, "not an image")
    w.put("random.jpg", np.random.default_rng(0).bytes(4096), BAD, "not an image")
    w.put("json.webp", b'{"error": "forbidden"}', BAD, "not an image")
    w.put("eps-inside.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", BAD,
          "unsupported format (EPS)")
    w.put("pdf-inside.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", BAD, "unsupported format (PDF)")
    # --- bad: formats not read, with their reason ---
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(32)
    w.put("phone.heic", heic, BAD, "unsupported format (HEIC)")
    w.put("phone.HEIF", heic, BAD, "unsupported format (HEIF)")
    w.put("heic-no-ext", heic, BAD, "unsupported format (HEIF)")
    w.put("heic-named.jpg", heic, BAD, "unsupported format (HEIF)")
    w.put("new.jxl", b"\xff\x0a" + bytes(30), BAD, "unsupported format (JPEG XL)")
    w.put("layers.psd", b"8BPS\x00\x01" + bytes(30), BAD, "unsupported format (Photoshop)")
    w.put("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", BAD, "unsupported format (SVG)")
    w.put("poster.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n", BAD, "unsupported format (EPS)")
    w.put("scan.pdf", b"%PDF-1.4\n", BAD, "unsupported format (PDF)")
    w.put("raw.dng", b"II*\x00" + bytes(30), BAD, "unsupported format (camera raw)")
    w.put("clip.mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", BAD, "a video")
    w.put("clip.avi", b"RIFF\x00\x00\x00\x00AVI LIST", BAD, "a video")
    w.put("mp4-no-ext", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", BAD, "a video")
    w.put("notes.txt", b"labels are in the CSV\n", BAD, "not an image file")
    w.put("labels.csv", b"file,age\nplain.jpg,30\n", BAD, "not an image file")
    w.put(".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64), BAD, "not an image file")
    w.put("Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), BAD, "not an image file")
    w.put("no-extension-text", b"hello\n", BAD, "not an image file")
    # --- bad: what is not a regular file ---
    os.mkfifo(photos / "pipe.jpg")
    w.mark(photos / "pipe.jpg", BAD, "FIFO")
    os.mkfifo(photos / "pipe-no-ext")
    w.mark(photos / "pipe-no-ext", BAD, "FIFO")
    for name, target, why in (("zero-link.jpg", "/dev/zero", "character device"), ("null-link.png", "/dev/null",
                              "character device"), ("urandom.jpg", "/dev/urandom", "character device"),
                              ("dangling.jpg", "missing-target.jpg", "dangling symlink"),
                              ("dangling-abs.png", "/nonexistent/agekit/x.png", "dangling symlink"),
                              ("self-loop.jpg", "self-loop.jpg", "symlink loop"),
                              ("loop-a.jpg", "loop-b.jpg", "symlink loop"),
                              ("loop-b.jpg", "loop-a.jpg", "symlink loop"),
                              ("up-link", "..", "link to a folder"), ("proc-link.jpg", "/proc/self/fd/0", "")):
        os.symlink(target, photos / name)
        w.mark(photos / name, BAD, why)
    os.symlink("plain.jpg", photos / "good-link.jpg")
    w.mark(photos / "good-link.jpg", GOOD)
    os.mkdir(photos / "folder.jpg")
    w.mark(photos / "folder.jpg", BAD, "a folder")
    os.mkdir(photos / "sub")
    (photos / "sub" / "inner.jpg").write_bytes(_pil_bytes(face(), "JPEG"))
    w.mark(photos / "sub", BAD, "a folder")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(photos / "socket.jpg"))
        c.cleanup.append(s)
        w.mark(photos / "socket.jpg", BAD, "socket")
    except OSError:  # path too long for a socket, or no AF_UNIX
        s.close()
    sparse = photos / "sparse-huge.bmp"
    with open(sparse, "wb") as f:
        f.write(b"BM")
        f.truncate(600 << 20)  # 600 MiB, nothing on disk
    w.mark(sparse, BAD, "file too large")
    locked = w.put("no-permission.jpg", _pil_bytes(face(), "JPEG"), BAD, "permission denied")
    os.chmod(locked, 0)
    os.mkdir(photos / "locked-sub")
    w.mark(photos / "locked-sub", BAD, "a folder")
    # --- inputs given on the command line, not inside the folder ---
    c.inputs.append(str(photos))
    extra = _Writer(c, root / "extra")
    lone = extra.put("alone.jpg", _pil_bytes(face(), "JPEG"), GOOD)
    weird = extra.put("direct-\udcff\n.jpg", _pil_bytes(face(), "JPEG"), GOOD)
    anyext = extra.put("photo.data", _pil_bytes(face(), "PNG"), GOOD)  # given directly: read whatever its suffix
    os.mkfifo(root / "extra" / "direct-pipe.jpg")
    extra.mark(root / "extra" / "direct-pipe.jpg", BAD, "FIFO")
    os.symlink("/dev/zero", root / "extra" / "direct-zero.jpg")
    extra.mark(root / "extra" / "direct-zero.jpg", BAD, "character device")
    locked_dir = root / "locked"
    locked_dir.mkdir()
    (locked_dir / "inside.jpg").write_bytes(_pil_bytes(face(), "JPEG"))
    inside = locked_dir / "inside.jpg"
    c.expect[str(inside)] = (BAD, "permission denied")
    empty = root / "empty"
    empty.mkdir()
    c.expect[str(empty)] = (BAD, "empty folder")
    missing = root / "extra" / "missing.jpg"
    c.expect[str(missing)] = (BAD, "missing")
    c.expect[str(root / "extra" / "direct-loop.jpg")] = (BAD, "symlink loop")
    os.symlink("direct-loop.jpg", root / "extra" / "direct-loop.jpg")
    globbed = _Writer(c, root / "globbed")
    globbed.put("g1.jpg", _pil_bytes(face(), "JPEG"), GOOD)
    globbed.put("g2.png", _pil_bytes(face(), "PNG"), GOOD)
    globbed.put("g3.txt", b"not a photo", BAD, "not an image file")
    os.mkfifo(root / "globbed" / "g4.jpg")
    globbed.mark(root / "globbed" / "g4.jpg", BAD, "FIFO")
    os.symlink("/dev/zero", root / "globbed" / "g5.jpg")
    globbed.mark(root / "globbed" / "g5.jpg", BAD, "character device")
    os.mkdir(root / "globbed" / "g6.jpg")
    globbed.mark(root / "globbed" / "g6.jpg", BAD, "a folder")
    nomatch = str(root / "globbed" / "*.nothing")
    c.expect[nomatch] = (BAD, "no file matches")
    locked_glob = str(locked_dir / "*.jpg")
    c.expect[locked_glob] = (BAD, "unreadable folder: permission denied")
    c.inputs += [str(lone), str(weird), str(anyext), str(root / "extra" / "direct-pipe.jpg"),
                 str(root / "extra" / "direct-zero.jpg"), str(inside), str(locked_dir), str(empty), str(missing),
                 str(root / "extra" / "direct-loop.jpg"), str(root / "globbed" / "g*"), nomatch, locked_glob]
    c.expect[str(locked_dir)] = (BAD, "unreadable folder")
    os.chmod(photos / "locked-sub", 0)
    os.chmod(locked_dir, 0)
    return c


def unlock(root: str | os.PathLike) -> None:
    """Give back the permissions the corpus took away (so that it can be deleted)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                if not os.path.islink(p) and stat.S_IMODE(os.lstat(p).st_mode) == 0:
                    os.chmod(p, 0o700)
            except OSError:
                pass
    for p in (Path(root) / "locked", Path(root) / "photos" / "locked-sub", Path(root) / "photos" / "no-permission.jpg"):
        if p.exists():
            os.chmod(p, 0o700)


if __name__ == "__main__":
    c = make_corpus(sys.argv[1])
    kinds = [k for k, _ in c.expect.values()]
    print(f"{len(c.expect)} entries: {kinds.count(GOOD)} good, {kinds.count(BAD)} bad, {kinds.count(EITHER)} either")
    print("inputs:", " ".join(repr(a) for a in c.inputs))
    c.close()
