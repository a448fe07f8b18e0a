"""The screen as pixels: draw the current view hierarchy (what ``uiautomator dump`` describes).

Generic over any screen: every node is drawn from its own attributes (bounds, class, text,
content-desc, checkable/checked, clickable, enabled, focused), so a screen added or changed in
``screens.py`` shows up without changes here. The picture is a schematic of the layout, not MIUI's
artwork: a status bar, each clickable node as a card, each text at its node's top-left, a
switch for each checkable node (accent colour when checked).

Outputs, in the formats Android's tools write:
- ``png``: what ``screencap -p`` writes (frameworks/base/cmds/screencap/screencap.cpp encodes
  the RGBA buffer with SkImageEncoder/AndroidBitmap_compress as PNG).
- ``raw``: ``screencap`` without -p: width, height, pixel format (u32 little-endian; 1 =
  PIXEL_FORMAT_RGBA_8888), from Android 9 a fourth u32 (the dataspace; 0 = unknown, our guess
  for the release it appeared), then the RGBA rows.
- ``framebuffer``: adbd's ``framebuffer:`` service (packages/modules/adb/daemon/
  framebuffer_service.cpp): ``struct fbinfo`` (version, bpp, [colorSpace from version 2],
  size, width, height, red/blue/green/alpha offset+length) and the pixels.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from .handset import View

BACKGROUND = (250, 250, 250, 255)
STATUS_BAR = (33, 33, 33, 255)
CARD = (255, 255, 255, 255)
CARD_EDGE = (200, 200, 200, 255)
TEXT = (33, 33, 33, 255)
TEXT_DISABLED = (160, 160, 160, 255)
ACCENT = (255, 103, 0, 255)  # MIUI orange, for checked switches and focus
SWITCH_OFF = (190, 190, 190, 255)
STATUS_BAR_HEIGHT = 50
PIXEL_FORMAT_RGBA_8888 = 1
_FONT_CACHE: dict[int, ImageFont.ImageFont | ImageFont.FreeTypeFont] = {}


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if size not in _FONT_CACHE:
        try:
            _FONT_CACHE[size] = ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow built without FreeType: the bitmap font
            _FONT_CACHE[size] = ImageFont.load_default()
    return _FONT_CACHE[size]


def _nodes(root: View) -> Iterable[View]:
    return root.walk()


def render(root: View, size: tuple[int, int]) -> Image.Image:
    """The screen's pixels (RGBA) for a view tree."""
    img = Image.new("RGBA", size, BACKGROUND)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size[0], STATUS_BAR_HEIGHT - 1), fill=STATUS_BAR)
    for view in _nodes(root):
        left, top, right, bottom = view.bounds
        if right <= left or bottom <= top:
            continue
        if view.clickable or view.checkable or view.cls.endswith("EditText"):
            outline = ACCENT if view.focused else CARD_EDGE
            draw.rounded_rectangle(
                (left + 2, top + 2, right - 3, bottom - 3), radius=8, fill=CARD, outline=outline, width=2
            )
        if view.cls.endswith("EditText"):
            draw.line((left + 10, bottom - 12, right - 12, bottom - 12), fill=ACCENT, width=2)
        if view.checkable:
            _switch(draw, view)
        label = view.text or (view.content_desc if not view.children else "")
        if label:
            height = bottom - top
            font = _font(max(12, min(32, height // 3)))
            colour = TEXT if view.enabled else TEXT_DISABLED
            font_size = getattr(font, "size", 11)
            draw.text((left + 16, top + max(4, (height - font_size) // 2)), label, fill=colour, font=font)
    return img


def _switch(draw: ImageDraw.ImageDraw, view: View) -> None:
    _left, top, right, bottom = view.bounds
    cy = (top + bottom) // 2
    x1 = right - 110
    track = ACCENT if view.checked else SWITCH_OFF
    draw.rounded_rectangle((x1, cy - 18, x1 + 80, cy + 18), radius=18, fill=track)
    knob = x1 + 62 if view.checked else x1 + 18
    draw.ellipse((knob - 15, cy - 15, knob + 15, cy + 15), fill=(255, 255, 255, 255))


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def raw(img: Image.Image, sdk: int) -> bytes:
    w, h = img.size
    head = struct.pack("<III", w, h, PIXEL_FORMAT_RGBA_8888)
    if sdk >= 28:
        head += struct.pack("<I", 0)
    return head + img.convert("RGBA").tobytes()


def framebuffer(img: Image.Image, sdk: int) -> bytes:
    """adbd's ``framebuffer:`` reply: version 1 (no colour space) before Android 9, else 2
    with colorSpace 1 (sRGB)."""
    w, h = img.size
    pixels = img.convert("RGBA").tobytes()
    if sdk >= 28:
        head = struct.pack("<III", 2, 32, 1)
    else:
        head = struct.pack("<II", 1, 32)
    head += struct.pack("<III", len(pixels), w, h)
    head += struct.pack("<8I", 0, 8, 16, 8, 8, 8, 24, 8)  # red, blue, green, alpha: offset, length
    return head + pixels
