"""A corpus of hostile and malformed benchmark items, built from nothing on disk.

``build_corpus(folder)`` writes source images, precomputed editor outputs and an
``annotations.jsonl``, and returns the cases in file order. Each case says which kind of bad input
it is; the test (tests/test_bad_inputs.py) holds the exact outcome expected for each.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

LONG_INSTRUCTION_CHARS = 50_000
LONG_NAME = "n" * 300  # over the 255 bytes a file-name component may have
OVERSIZED_BYTES = 512 * 2**20 + 1  # one byte over editjudge.files.MAX_INPUT_FILE_BYTES (a sparse file)
RTL_INSTRUCTION = "\u05d4\u05e4\u05d5\u05da \u05d0\u05ea \u05d4\u05e9\u05de\u05d9\u05d9\u05dd \u05dc\u05db\u05d7\u05d5\u05dc\u05d9\u05dd \u202e\u0627\u062c\u0639\u0644 \u0627\u0644\u0633\u0645\u0627\u0621 \u0632\u0631\u0642\u0627\u0621 \U0001f308 e\u0301"


@dataclass
class Case:
    kind: str
    id: str
    instruction: str = "make the sky blue"
    category: str = "color"
    image: str = ""  # under images/ in the corpus folder (or an absolute path); empty for <kind>.<ext>
    output: str | None = "ok"  # what the precomputed editor finds: "ok", "small", "corrupt", "loop" (a
    # symlink to itself) or None (none)
    extra: dict = field(default_factory=dict)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A well-formed PNG whose header claims width x height RGB pixels; its data holds one row."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\x80" * (3 * 64))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", row) + _chunk(b"IEND", b"")


def _gradient(size=(48, 32)) -> Image.Image:
    """A picture that compresses poorly, so that half of its file is half of its pixels."""
    image = Image.new("RGB", size)
    image.putdata([(x * 5 % 256, y * 7 % 256, (x * 131 + y * 71) ** 2 % 251)
                   for y in range(size[1]) for x in range(size[0])])
    return image


def _half(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _source_bytes(kind: str) -> tuple[str, bytes | None]:
    """(file name, bytes) of the source image for ``kind``; bytes None for a missing file."""
    good = _gradient()
    if kind == "zero_byte":
        return "zero_byte.png", b""
    if kind == "truncated_png":
        return "truncated_png.png", _half(_png_bytes(good))
    if kind == "truncated_jpeg":
        return "truncated_jpeg.jpg", _half(_jpeg_bytes(good))
    if kind == "text_as_png":
        return "text_as_png.png", b"this is a text file, not a picture\n"
    if kind == "one_pixel":
        return "one_pixel.png", _png_bytes(Image.new("RGB", (1, 1), (200, 30, 30)))
    if kind == "gray16":
        image = Image.new("I;16", (40, 30))
        image.putdata([(x * 1500) % 65536 for y in range(30) for x in range(40)])
        return "gray16.png", _png_bytes(image)
    if kind == "cmyk_jpeg":
        return "cmyk_jpeg.jpg", _jpeg_bytes(good.convert("CMYK"))
    if kind == "rgba":
        image = good.convert("RGBA")
        image.putalpha(Image.linear_gradient("L").resize(good.size))
        return "rgba.png", _png_bytes(image)
    if kind == "palette":
        image = good.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        image.info["transparency"] = 0
        return "palette.png", _png_bytes(image)
    if kind == "animated_gif":
        frames = [Image.new("RGB", (40, 30), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
        buffer = io.BytesIO()
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        return "animated_gif.gif", buffer.getvalue()
    if kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # shown rotated 90 degrees clockwise: 48x32 stored, 32x48 displayed
        return "exif_rotated.jpg", _jpeg_bytes(good, exif=exif)
    if kind == "huge_header":
        return "huge_header.png", huge_header_png()
    if kind == "missing_file":
        return "missing_file.png", None
    if kind == "webp":
        buffer = io.BytesIO()
        good.save(buffer, "WEBP")
        return "webp.webp", buffer.getvalue()
    return f"{kind}.png", _png_bytes(good)


# Every kind of bad input, in annotations order. Duplicate ids and a line that is not JSON are load
# errors of the whole file, so they are separate annotations files (see the test).
CASES = [
    Case("plain", "plain"),
    Case("zero_byte", "zero_byte"),
    Case("truncated_png", "truncated_png"),
    Case("truncated_jpeg", "truncated_jpeg"),
    Case("text_as_png", "text_as_png"),
    Case("one_pixel", "one_pixel"),
    Case("gray16", "gray16"),
    Case("cmyk_jpeg", "cmyk_jpeg"),
    Case("rgba", "rgba"),
    Case("palette", "palette"),
    Case("animated_gif", "animated_gif"),
    Case("exif_rotated", "exif_rotated"),
    Case("huge_header", "huge_header"),
    Case("missing_file", "missing_file"),
    Case("webp", "webp"),
    Case("dotdot_id", "../../escape", image="plain.png"),
    Case("slash_id", "a/b/c", image="plain.png"),
    Case("illegal_chars_id", 'con:<>|?*"\\\x00\n', image="plain.png"),
    Case("dotdot_category", "dotdot_category", category="../../../tmp", image="plain.png"),
    Case("empty_instruction", "empty_instruction", instruction="", image="plain.png"),
    Case("blank_instruction", "blank_instruction", instruction=" \t\n ", image="plain.png"),
    Case("long_instruction", "long_instruction", instruction=("make it red " * 5000)[:LONG_INSTRUCTION_CHARS],
         image="plain.png"),
    Case("rtl_unicode", "rtl_unicode_\u05d0\u0628", instruction=RTL_INSTRUCTION, category="\u8272\u5f69",
         image="plain.png"),
    Case("html_in_text", "html_in_text", instruction='<script>document.title="pwned"</script>"onerror=alert(1) x="',
         category="<b>c</b>", image="plain.png"),
    Case("formula_category", "formula_category", category='=HYPERLINK("http://evil.example","x")',
         image="plain.png"),
    Case("wrong_size_output", "wrong_size_output", image="plain.png", output="small"),
    Case("corrupt_output", "corrupt_output", image="plain.png", output="corrupt"),
    Case("no_output", "no_output", image="plain.png", output=None),
    # issue #26: files that are not regular files, or too large, are never read (no hang)
    Case("fifo_image", "fifo_image"),
    Case("dev_zero_image", "dev_zero_image", image="/dev/zero"),
    Case("oversized_image", "oversized_image"),
    # issue #26: names no file system takes, and a symlink loop
    Case("long_path_component", "long_path_component", image=f"{LONG_NAME}.png"),
    Case("long_id", "L" * 300, image="plain.png"),
    Case("long_category", "long_category", category="C" * 300, image="plain.png"),
    Case("symlink_loop_output", "symlink_loop_output", image="plain.png", output="loop"),
    Case("nul_in_id", "nul\x00in\x1bid", image="plain.png", output=None),  # listed among the failures
    # issue #26: image paths may point anywhere, by design (README: Security); these are read and shown
    Case("absolute_image", "absolute_image"),
    Case("dotdot_image", "dotdot_image", image="../precomputed/plain.png"),
    Case("symlink_image", "symlink_image"),
]


def build_corpus(folder: Path, cases: list[Case] = CASES) -> Path:
    """Write the corpus under ``folder``; returns the annotations file."""
    sources = folder / "images"
    outputs = folder / "precomputed"
    sources.mkdir(parents=True, exist_ok=True)
    outputs.mkdir(parents=True, exist_ok=True)
    from editjudge.paths import safe_name

    lines = []
    for case in cases:
        if case.kind == "fifo_image":
            case.image = "fifo_image.png"
            if not (sources / case.image).exists():
                os.mkfifo(sources / case.image)
        elif case.kind == "oversized_image":
            case.image = "oversized_image.png"
            with open(sources / case.image, "wb") as f:
                f.write(_png_bytes(_gradient()))
                f.truncate(OVERSIZED_BYTES)  # sparse: no disk used
        elif case.kind == "absolute_image":
            case.image = str((sources / "absolute_image.png").resolve())
            (sources / "absolute_image.png").write_bytes(_png_bytes(_gradient()))
        elif case.kind == "symlink_image":
            case.image = "symlink_image.png"  # a link to a file outside images/
            (outputs / "plain.png").parent.mkdir(parents=True, exist_ok=True)
            if not (sources / case.image).is_symlink():
                (sources / case.image).symlink_to("../precomputed/plain.png")
        elif case.kind == "long_path_component":
            pass  # no such file can exist: its name is too long
        elif Path(case.image).is_absolute():
            pass
        elif not case.image:
            name, data = _source_bytes(case.kind)
            case.image = name
            if data is not None:
                (sources / name).write_bytes(data)
        else:
            name, data = _source_bytes("plain")
            if not (sources / case.image).exists():
                (sources / case.image).write_bytes(data)
        stem = safe_name(case.id)
        if case.output == "ok":
            _gradient((48, 32)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(outputs / f"{stem}.png")
        elif case.output == "small":
            _gradient((24, 16)).save(outputs / f"{stem}.png")
        elif case.output == "corrupt":
            (outputs / f"{stem}.png").write_bytes(_half(_png_bytes(_gradient())))
        elif case.output == "loop":
            (outputs / f"{stem}.png").symlink_to(f"{stem}.png")
        image = case.image if Path(case.image).is_absolute() else f"images/{case.image}"
        record = {"id": case.id, "category": case.category, "instruction": case.instruction,
                  "image": image, **case.extra}
        lines.append(json.dumps(record, ensure_ascii=False))
    annotations = folder / "annotations.jsonl"
    annotations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return annotations


class EchoingJudge:
    """A hostile OpenAI-compatible endpoint on 127.0.0.1, as some proxies and gateways behave.

    ``GET /v1/models``: ``list`` lists ``model``; ``401`` refuses with the Authorization header echoed
    in the body; ``redirect`` answers 302 to ``redirect_to``. ``POST /v1/chat/completions``: the
    first request gets a JSON 400 echoing the header, every later one a plain-text 500 echoing it
    URL-quoted and raw. ``authorizations`` holds each request's Authorization header (None: none).
    """

    def __init__(self, models: str = "list", model: str = "m", redirect_to: str = "") -> None:
        import http.server
        import threading
        import urllib.parse

        self.authorizations: list[str | None] = []
        judge = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes, content_type="application/json", headers=()):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                header = self.headers.get("Authorization")
                judge.authorizations.append(header)
                if models == "401":
                    self._answer(401, json.dumps({"error": {"message": f"invalid key in {header!r}"}}).encode())
                elif models == "redirect":
                    self._answer(302, b"", headers=[("Location", redirect_to)])
                else:
                    self._answer(200, json.dumps({"data": [{"id": model}]}).encode())

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                header = self.headers.get("Authorization") or ""
                judge.authorizations.append(header)
                if len([a for a in judge.authorizations if a is not None]) <= 2:  # the GET, then the first POST
                    self._answer(400, json.dumps({"error": {"message": f"bad request from {header}"}}).encode())
                else:
                    quoted = urllib.parse.quote(header, safe="")
                    self._answer(500, f"upstream failed: {quoted} / {header}".encode(), "text/plain")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "EchoingJudge":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
