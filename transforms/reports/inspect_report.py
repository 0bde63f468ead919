"""What `inspect` draws, as pure functions: sample choice, class colours, contact sheets, charts, HTML.

Images are decoded from the records themselves with Pillow and drawn as TensorFlow's decoders see
them: raw pixels, EXIF orientation not applied. A box in the wrong place here is in the wrong place
for the model too.
"""
from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import html
import io
import math
import warnings
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont

from transforms.records.reader import ODBox, ODRecord

TILE_WIDTH, TILE_HEIGHT, CAPTION_HEIGHT, COLUMNS = 384, 288, 34, 4
BOX_LINE = 3
BACKGROUND = (32, 32, 32)
_GOLDEN_RATIO = 0.6180339887498949


def sample_key(record_bytes: bytes) -> bytes:
    """The order samples are chosen in: a hash of the record, so the choice depends on the records only,
    not on file names, shard counts or reading order."""
    return hashlib.sha256(record_bytes).digest()


def class_name(box: ODBox, label_names: Mapping[int, str]) -> str:
    if box.text:
        return box.text
    if box.label is not None:
        return label_names.get(box.label, f"id {box.label}")
    return "?"


def class_colours(names: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    """A distinct, saturated colour per class: hues a golden ratio apart never repeat, so any number of
    classes get different hues, neighbours in the list the most different ones."""
    colours = {}
    for index, name in enumerate(names):
        red, green, blue = colorsys.hsv_to_rgb((index * _GOLDEN_RATIO) % 1.0, 0.85, 1.0)
        colours[name] = (round(red * 255), round(green * 255), round(blue * 255))
    return colours


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def decode_for_display(record: ODRecord) -> Tuple[Optional[Image.Image], str]:
    """The record's image as RGB, or None and why it could not be decoded."""
    if not record.encoded:
        return None, "no image bytes"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(record.encoded))
            image.draft("RGB", (TILE_WIDTH * 2, TILE_HEIGHT * 2))  # a JPEG decodes at a fraction of its size
            return image.convert("RGB"), ""
    except Exception as error:  # any decoder failure is shown in the tile, not raised
        return None, f"undecodable: {type(error).__name__}"


@dataclasses.dataclass
class Tile:
    """Where one sample sits in its sheet (the image area, in sheet pixels) and the boxes drawn there."""

    file: str
    record: int
    filename: str
    image_area: Tuple[int, int, int, int]
    boxes: List[dict]


def _box_warning(box: ODBox) -> str:
    """Said beside the class name, since a box drawn min to max looks right even when it is not."""
    if box.xmin > box.xmax or box.ymin > box.ymax:
        return " (inverted!)"
    if min(box.xmin, box.ymin) < 0 or max(box.xmax, box.ymax) > 1:
        return " (outside!)"
    return ""


def draw_tile(record: ODRecord, colours: Mapping[str, Tuple[int, int, int]], label_names: Mapping[int, str]):
    """One sample: its image scaled into the tile, boxes in their class colour with the class name, a caption."""
    tile = Image.new("RGB", (TILE_WIDTH, TILE_HEIGHT + CAPTION_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(tile)
    image, problem = decode_for_display(record)
    if image is None:  # still draw the boxes, on a canvas of the stated size, so they can be seen
        size = (record.width or TILE_WIDTH, record.height or TILE_HEIGHT)
        image = Image.new("RGB", size, (90, 90, 90))
    scale = min(TILE_WIDTH / image.width, TILE_HEIGHT / image.height)
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    left, top = (TILE_WIDTH - shown.width) // 2, (TILE_HEIGHT - shown.height) // 2
    tile.paste(shown, (left, top))
    font = _font(12)
    drawn = []
    for box in record.boxes:
        name = class_name(box, label_names)
        colour = colours.get(name, (255, 255, 255))
        corners = [
            left + box.xmin * shown.width,
            top + box.ymin * shown.height,
            left + box.xmax * shown.width,
            top + box.ymax * shown.height,
        ]
        if not all(math.isfinite(value) for value in corners):
            continue
        x0, y0, x1, y1 = (round(value) for value in corners)
        # An inverted box is drawn as it would be read (min and max swapped back), which makes it visible.
        x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=BOX_LINE)
        caption = name + _box_warning(box)
        text_box = draw.textbbox((x0, y0), caption, font=font)
        label_top = max(0, y0 - (text_box[3] - text_box[1]) - 4)
        draw.rectangle([x0, label_top, x0 + text_box[2] - text_box[0] + 4, y0], fill=colour)
        draw.text((x0 + 2, label_top), caption, fill=(0, 0, 0), font=font)
        drawn.append({"class": name, "caption": caption, "label": box.label, "rectangle": [x0, y0, x1, y1], "colour": list(colour)})
    size = f"{record.width}x{record.height}" if record.width and record.height else "size ?"
    count = len(record.boxes)
    caption = f"{record.filename[-44:]}\n{size}, {count} box{'' if count == 1 else 'es'}" + (f", {problem}" if problem else "")
    draw.multiline_text((4, TILE_HEIGHT + 2), caption, fill=(230, 230, 230), font=font, spacing=2)
    return tile, (left, top, left + shown.width, top + shown.height), drawn


def contact_sheet(
    samples: Sequence[Tuple[str, int, ODRecord]],
    colours: Mapping[str, Tuple[int, int, int]],
    label_names: Mapping[int, str],
) -> Tuple[Image.Image, List[Tile]]:
    """(file, record index, record) samples in a grid of COLUMNS; each tile's place for the index."""
    columns = min(COLUMNS, max(1, len(samples)))
    rows = max(1, math.ceil(len(samples) / columns))
    sheet = Image.new("RGB", (columns * TILE_WIDTH, rows * (TILE_HEIGHT + CAPTION_HEIGHT)), BACKGROUND)
    tiles = []
    for position, (file, index, record) in enumerate(samples):
        tile, (left, top, right, bottom), drawn = draw_tile(record, colours, label_names)
        x, y = (position % columns) * TILE_WIDTH, (position // columns) * (TILE_HEIGHT + CAPTION_HEIGHT)
        sheet.paste(tile, (x, y))
        for box in drawn:
            box["rectangle"] = [box["rectangle"][0] + x, box["rectangle"][1] + y, box["rectangle"][2] + x, box["rectangle"][3] + y]
        tiles.append(Tile(file, index, record.filename, (left + x, top + y, right + x, bottom + y), drawn))
    return sheet, tiles


@dataclasses.dataclass
class SplitStats:
    """Counts over every record of a split, for the charts and the index."""

    files: int = 0
    records: int = 0
    negatives: int = 0
    unreadable: int = 0
    unreadable_files: int = 0  # a file that cannot be opened or stops being readable midway
    boxes_per_class: Counter = dataclasses.field(default_factory=Counter)
    box_sizes: List[float] = dataclasses.field(default_factory=list)  # sqrt(width * height) in pixels

    def add(self, record: ODRecord, label_names: Mapping[int, str]) -> None:
        self.records += 1
        self.negatives += not record.boxes
        for box in record.boxes:
            self.boxes_per_class[class_name(box, label_names)] += 1
            if record.width and record.height:
                area = (box.xmax - box.xmin) * record.width * (box.ymax - box.ymin) * record.height
                if math.isfinite(area) and area > 0:
                    self.box_sizes.append(math.sqrt(area))


def ordered_classes(stats: Mapping[str, SplitStats], label_names: Mapping[int, str]) -> List[str]:
    """Every class seen: the label map's in id order, then the others by name."""
    seen = set()
    for split_stats in stats.values():
        seen.update(split_stats.boxes_per_class)
    in_map = [name for _, name in sorted(label_names.items()) if name in seen]
    return in_map + sorted(seen - set(in_map))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


MAX_CHART_CLASSES = 40


def class_chart(stats: Mapping[str, SplitStats], classes: Sequence[str], colours: Mapping[str, tuple]) -> bytes:
    """Horizontal bars: boxes per class (the MAX_CHART_CLASSES most frequent), one bar per split."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    totals = Counter()
    for split_stats in stats.values():
        totals.update(split_stats.boxes_per_class)
    shown = sorted(classes, key=lambda name: (-totals[name], classes.index(name)))[:MAX_CHART_CLASSES]
    splits = list(stats)
    height = 0.8 / max(1, len(splits))
    figure, axes = pyplot.subplots(figsize=(9, 1.5 + 0.35 * len(shown) * max(1, len(splits)) ** 0.5))
    for offset, split in enumerate(splits):
        counts = [stats[split].boxes_per_class[name] for name in shown]
        positions = [index + offset * height for index in range(len(shown))]
        bars = axes.barh(positions, counts, height=height, label=split, color=f"C{offset}")
        axes.bar_label(bars, padding=2, fontsize=8)
    axes.set_yticks([index + height * (len(splits) - 1) / 2 for index in range(len(shown))], shown)
    for tick, name in zip(axes.get_yticklabels(), shown):  # the class's colour in the contact sheets
        tick.set_bbox({"facecolor": tuple(c / 255 for c in colours.get(name, (255, 255, 255))), "edgecolor": "none", "pad": 1})
    axes.invert_yaxis()
    axes.set_xlabel("boxes")
    more = f" (top {MAX_CHART_CLASSES} of {len(classes)})" if len(classes) > MAX_CHART_CLASSES else ""
    axes.set_title(f"Boxes per class and split{more}")
    if shown:
        axes.legend(loc="best")
    figure.tight_layout()
    data = _png(figure)
    pyplot.close(figure)
    return data


def size_chart(stats: Mapping[str, SplitStats]) -> bytes:
    """Histogram of box sizes, sqrt(area) in image pixels on a log scale, one line per split; the COCO
    small/medium/large limits (32 and 96 pixels) marked, since COCO metrics report by them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(9, 4))
    sizes = [size for split_stats in stats.values() for size in split_stats.box_sizes]
    if sizes:
        low, high = max(1.0, min(sizes)), max(2.0, max(sizes))
        bins = [low * (high / low) ** (i / 40) for i in range(41)]
        for offset, (split, split_stats) in enumerate(stats.items()):
            if split_stats.box_sizes:
                axes.hist(split_stats.box_sizes, bins=bins, histtype="step", linewidth=2, label=f"{split} ({len(split_stats.box_sizes)})", color=f"C{offset}")
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        for limit, name in ((32, "small | medium"), (96, "medium | large")):
            axes.axvline(limit, color="grey", linestyle=":")
            axes.text(limit, axes.get_ylim()[1] * 0.95, f" {name}", fontsize=8, color="grey", va="top")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no sized boxes", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("box size: sqrt(width x height) in pixels")
    axes.set_ylabel("boxes")
    axes.set_title("Box sizes per split")
    figure.tight_layout()
    data = _png(figure)
    pyplot.close(figure)
    return data


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def index_html(
    *,
    folder: str,
    stats: Mapping[str, SplitStats],
    classes: Sequence[str],
    colours: Mapping[str, tuple],
    class_ids: Mapping[str, int],
    sheets: Mapping[str, str],
    summary: Optional[dict],
    rejected: Sequence[dict],
    rejected_total: int,
) -> str:
    """The page that shows it all; every string from the data is escaped (file names are untrusted)."""
    e = lambda value: html.escape(str(value))
    parts = [
        "<!doctype html><meta charset='utf-8'><title>inspect: " + e(folder) + "</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}"
        ".swatch{display:inline-block;width:1em;height:1em;vertical-align:middle}</style>",
        f"<h1>{e(folder)}</h1>",
        "<h2>Records</h2>",
        _table(
            ["split", "files", "records", "boxes", "negatives (no boxes)", "unreadable records", "unreadable files"],
            [
                [e(split), s.files, s.records, sum(s.boxes_per_class.values()), s.negatives, s.unreadable,
                 s.unreadable_files]
                for split, s in stats.items()
            ],
        ),
    ]
    if summary:
        boxes = summary.get("boxes", {})
        duplicates = summary.get("duplicates", {})
        parts += [
            "<h2>summary.json</h2>",
            _table(
                ["images read", "written", "rejected", "boxes read", "boxes written", "clipped", "boxes rejected", "duplicate groups"],
                [[e(summary.get("images_read")), e(summary.get("images_written")), e(summary.get("images_rejected")),
                  e(boxes.get("read")), e(boxes.get("written")), e(boxes.get("clipped")), e(boxes.get("rejected")),
                  e(duplicates.get("groups"))]],
            ),
        ]
    parts += [
        "<h2>Classes</h2>",
        _table(
            ["colour", "id", "class", *stats],
            [
                [f"<span class='swatch' style='background:rgb{colours[name]}'></span>", e(class_ids.get(name, "")), e(name),
                 *(s.boxes_per_class[name] for s in stats.values())]
                for name in classes
            ],
        ),
        "<img src='boxes_per_class.png' alt='boxes per class and split'>",
        "<img src='box_sizes.png' alt='box sizes per split'>",
        "<h2>Samples</h2><p>Decoded from the records, drawn as TensorFlow sees them (EXIF orientation not applied); "
        "chosen by a hash of each record, so the same records give the same samples. Positions in samples.json.</p>",
    ]
    for split, sheet in sheets.items():
        parts.append(f"<h3>{e(split)}</h3><img src='{e(sheet)}' alt='samples of {e(split)}'>")
    if summary is not None or rejected:
        reasons = (summary or {}).get("rejections", {})
        parts.append("<h2>Rejections</h2>")
        if reasons:
            parts.append(_table(["reason", "count"], [[e(reason), e(count)] for reason, count in reasons.items()]))
        shown = f" (first {len(rejected)} of {rejected_total})" if rejected_total > len(rejected) else ""
        parts.append(f"<p>rejected.jsonl: {rejected_total} entries{shown}</p>")
        if rejected:
            parts.append(_table(["source", "reason", "detail"], [[e(r.get("source")), e(r.get("reason")), e(r.get("detail"))] for r in rejected]))
    return "\n".join(parts) + "\n"
