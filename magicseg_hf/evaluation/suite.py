"""``magicseg evaluate --suite SUITE.yaml --output DIR``: every (model, method) x benchmark cell, one table.

A suite file names the rows (a checkpoint and a method each) and the columns (benchmarks)::

    models:                                  # rows
      - {name: MagicSeg, model: out/model}   # method magicseg (default)
      - {model: openai/clip-vit-base-patch16, method: sclip}
      - {model: openai/clip-vit-base-patch16, method: naclip}
    benchmarks:                              # columns
      - {name: voc21, data_dir: data}
      - {name: context60, data_dir: data}
    settings: {limit: 100, batch_size: 16}   # optional: any `magicseg evaluate` setting, for every cell
    update_card: true                        # optional: as `--update-card` (below)

Each cell runs under its method's own protocol (or the row's / column's ``protocol``) and writes its results
file (the same JSON as ``magicseg evaluate``) to ``DIR/cells/<row>__<benchmark>.json`` atomically when it
finishes; a rerun skips finished cells, so a suite killed at any point resumes with them kept. Work is shared:
a benchmark's images are decoded once for all its pending cells, a model is loaded once, and each cell encodes
its class list once. At the end ``DIR/comparison.md`` (rows methods, columns benchmarks, each cell mIoU with its
protocol) and ``DIR/comparison.png`` (grouped bars) are written from the cells' files.

With ``--update-card`` (``update_card=True``, or ``update_card: true`` in the file) the finished table also goes
into the card of every row's local model folder of method ``magicseg``: the folder gets the table as
``comparison.json`` (the card's "Comparison with training-free baselines" section) and that row's cell results as
``results-<benchmark>-<protocol>.json`` (the card's results table and ``model-index``, as a single
``magicseg evaluate --update-card`` writes them), and its ``README.md`` is rendered again. A suite without such a
folder is refused before anything is run or written.

Bad input — a missing file, a missing or unknown key, an unknown benchmark, method or protocol — is one line
(InputError) before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.protocols import check_method, get_protocol
from magicseg_hf.evaluation.run import (
    EvaluationConfig,
    _check_settings,
    check_something_scored,
    load_method_model,
    results_dict,
)
from magicseg_hf.generation.config import check_field_types
from magicseg_hf.runtime import resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

SUITE_KEYS = ("models", "benchmarks", "settings", "update_card")
ROW_KEYS = ("model", "method", "name", "protocol", "revision")
COLUMN_KEYS = ("name", "data_dir", "protocol", "split")
#: Settings a suite may set for every cell (EvaluationConfig fields, minus the per-cell ones).
SETTING_KEYS = tuple(
    field.name for field in dataclasses.fields(EvaluationConfig)
    if field.name not in ("model", "benchmark", "output", "method", "protocol", "data_dir", "split", "revision",
                          "overlays", "update_card")
)  # fmt: skip
#: Images decoded at a time and handed to every pending cell of the benchmark.
IMAGES_PER_CHUNK = 16


@dataclass(frozen=True, eq=False)
class Cell:
    """One (row, column) of the suite."""

    row: str
    column: str
    config: EvaluationConfig

    @property
    def output(self) -> Path:
        return Path(self.config.output)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _entries(value: Any, key: str, allowed: Sequence[str], required: str, path: Path) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise InputError(f"suite {path}: '{key}' must be a non-empty list (got {value!r})")
    entries = []
    for index, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {required: entry}
        if not isinstance(entry, dict):
            raise InputError(f"suite {path}: {key}[{index}] must be a mapping (got {entry!r})")
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            raise InputError(f"suite {path}: {key}[{index}] has unknown key {unknown[0]!r} "
                             f"(expected {', '.join(allowed)})")
        if required not in entry:
            raise InputError(f"suite {path}: {key}[{index}] is missing the key '{required}'")
        entries.append(entry)
    return entries


def load_suite(path: str | Path, output_dir: str | Path) -> list[Cell]:
    """The suite's cells, every value checked (InputError, one line, for anything wrong)."""
    return _load_suite(path, output_dir)[0]


def _load_suite(path: str | Path, output_dir: str | Path) -> tuple[list[Cell], bool]:
    """The suite's cells and its ``update_card`` value, every value checked."""
    import yaml

    from magicseg_hf.evaluation.benchmarks import BENCHMARK_NAMES

    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"suite file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"suite {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise InputError(f"suite {path} must be a mapping with keys {', '.join(SUITE_KEYS)}")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise InputError(f"suite {path}: unknown key {unknown[0]!r} (expected {', '.join(SUITE_KEYS)})")
    for key in ("models", "benchmarks"):
        if key not in data:
            raise InputError(f"suite {path} is missing the key '{key}'")
    rows = _entries(data["models"], "models", ROW_KEYS, "model", path)
    columns = _entries(data["benchmarks"], "benchmarks", COLUMN_KEYS, "name", path)
    update_card = data.get("update_card", False)
    if not isinstance(update_card, bool):
        raise InputError(f"suite {path}: 'update_card' must be true or false (got {update_card!r})")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise InputError(f"suite {path}: 'settings' must be a mapping (got {settings!r})")
    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise InputError(f"suite {path}: unknown setting {unknown[0]!r} (expected {', '.join(SETTING_KEYS)})")
    base = path.parent
    for column in columns:
        name = str(column["name"])
        folder = (base / name) if not Path(name).is_absolute() else Path(name)
        if name not in BENCHMARK_NAMES:
            if not folder.is_dir():
                raise InputError(f"suite {path}: unknown benchmark {name!r} (expected one of "
                                 f"{', '.join(BENCHMARK_NAMES)} or a dataset folder)")
            column["name"] = str(folder)
        if column.get("data_dir") is not None and not Path(str(column["data_dir"])).is_absolute():
            column["data_dir"] = str(base / str(column["data_dir"]))
    row_names: list[str] = []
    for row in rows:
        check_method(str(row.get("method", "magicseg")))
        for entry in (row, *columns):
            if entry.get("protocol") is not None:
                get_protocol(str(entry["protocol"]))
        model = str(row["model"])
        if not Path(model).is_absolute() and (base / model).exists():
            row["model"] = str(base / model)
        row_names.append(str(row.get("name") or f"{row.get('method', 'magicseg')} ({Path(model).name})"))
    if len(set(row_names)) != len(row_names):
        raise InputError(f"suite {path}: two rows share the name {sorted(row_names)[0]!r}; give each a 'name'")
    if isinstance(settings.get("max_long_side"), int) and not isinstance(settings["max_long_side"], bool):
        settings["max_long_side"] = str(settings["max_long_side"])  # the command line's text form ("none" or px)
    output_dir = Path(output_dir).expanduser()
    cells: list[Cell] = []
    written: dict[str, Cell] = {}
    for row, row_name in zip(rows, row_names):
        for column in columns:
            column_name = Path(str(column["name"])).name
            config = EvaluationConfig(
                model=str(row["model"]), revision=row.get("revision"), method=str(row.get("method", "magicseg")),
                benchmark=str(column["name"]), data_dir=column.get("data_dir"), split=column.get("split"),
                protocol=row.get("protocol") or column.get("protocol"),
                output=str(output_dir / "cells" / f"{_slug(row_name)}__{_slug(column_name)}.json"), **settings,
            )  # fmt: skip
            try:
                check_field_types(config)  # YAML gives any type: a wrong one is one line, not a TypeError later
            except InputError as error:
                raise InputError(f"suite {path}: {error}") from None
            cell = Cell(row_name, column_name, config)
            other = written.setdefault(config.output, cell)
            if other is not cell:
                raise InputError(
                    f"suite {path}: cells ({other.row}, {other.column}) and ({cell.row}, {cell.column}) would share "
                    f"one results file and one table cell: give the rows distinct names and list a benchmark once"
                )
            cells.append(cell)
    return cells, update_card


def card_folders(cells: Sequence[Cell]) -> dict[Path, list[str]]:
    """The local model folders of the suite's ``magicseg`` rows (a folder holding ``config.json``) and, per
    folder, its rows' names: the cards ``update_card`` writes into."""
    from magicseg_hf.cards.model import CONFIG_FILE

    folders: dict[Path, list[str]] = {}
    for cell in cells:
        folder = Path(cell.config.model).expanduser()
        if cell.config.method == "magicseg" and (folder / CONFIG_FILE).is_file():
            rows = folders.setdefault(folder.resolve(), [])
            rows += [cell.row] if cell.row not in rows else []
    return folders


def update_cards(cells: Sequence[Cell], table: ComparisonTable, suite_name: str | None = None) -> list[Path]:
    """Put the finished ``table`` into the card of each of :func:`card_folders`: ``comparison.json`` (the card's
    comparison section), the folder's rows' finished cell results as ``results-*.json`` (its results table and
    ``model-index``), then ``README.md`` rendered again; returns the cards written."""
    from magicseg_hf.cards.model import COMPARISON_FILE, write_model_card
    from magicseg_hf.evaluation.run import card_results_name
    from magicseg_hf.folder import atomic_write_json

    written = []
    for folder, ours in card_folders(cells).items():
        for cell in cells:
            if cell.row in ours and _finished(cell):
                results = json.loads(cell.output.read_text(encoding="utf-8"))
                atomic_write_json(folder / card_results_name(results), results)
        methods = {cell.row: cell.config.method for cell in cells}
        atomic_write_json(folder / COMPARISON_FILE, {
            "suite": suite_name,
            "columns": table.columns,
            "rows": [{"name": row, "method": methods[row], "ours": row in ours} for row in table.rows],
            "cells": [{"row": row, "column": column, "mean_iou_percent": value, "protocol": protocol}
                      for (row, column), (value, protocol) in table.values.items()],
        })
        written.append(write_model_card(folder))
    return written


def _finished(cell: Cell) -> bool:
    try:
        return bool(json.loads(cell.output.read_text(encoding="utf-8")).get("complete"))
    except (OSError, ValueError):
        return False


def _chunks(samples: Any, size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_suite(path: str | Path, output_dir: str | Path, update_card: bool = False) -> dict[str, Any]:
    """Run every unfinished cell, then write ``comparison.md`` and ``comparison.png`` (and, with ``update_card``
    or the file's ``update_card: true``, the table into the suite's MagicSeg model cards: :func:`update_cards`);
    returns a summary (``cells``, ``computed``, ``skipped``, ``wall_time_seconds``, the two files' paths,
    ``cards``)."""
    from magicseg_hf.evaluation.benchmarks import load_benchmark
    from magicseg_hf.evaluation.inference import BenchmarkPredictor
    from magicseg_hf.evaluation.metric import MeanIoUAccumulator
    from magicseg_hf.folder import (
        atomic_write_bytes,
        atomic_write_image,
        atomic_write_json,
        remove_stale_temporaries,
    )

    start = time.perf_counter()
    cells, file_update_card = _load_suite(path, output_dir)
    update_card = update_card or file_update_card
    if update_card and not card_folders(cells):
        rows = ", ".join(sorted({f"{cell.row} ({cell.config.method})" for cell in cells}))
        raise InputError(f"suite {path}: `update_card` needs a row of method magicseg whose model is a local model "
                         f"folder (with config.json), to write its card (rows: {rows})")
    protocols = {cell: _check_settings(cell.config)[0] for cell in cells}  # every cell's values, before any work
    output_dir = Path(output_dir).expanduser()
    pending = [cell for cell in cells if not _finished(cell)]
    skipped = len(cells) - len(pending)
    if skipped:
        logger.info("suite: %d of %d cells already finished (kept)", skipped, len(cells))
    models: dict[tuple[str, str | None, bool, str, str], tuple[Any, Any]] = {}
    by_column: dict[tuple[str, str | None, str | None], list[Cell]] = {}
    for cell in pending:
        by_column.setdefault((cell.config.benchmark, cell.config.data_dir, cell.config.split), []).append(cell)
    for (name, data_dir, split), column_cells in by_column.items():
        first = column_cells[0].config
        benchmark = load_benchmark(name, data_dir, split, first.coco_object_source, first.limit,
                                   coco_object_unlabeled=first.coco_object_unlabeled)  # fmt: skip
        if len(benchmark) == 0:
            raise InputError(f"benchmark {benchmark.name} has no images in split {benchmark.split}")
        runs = []
        for cell in column_cells:
            config = cell.config
            device = resolve_device(config.device)
            key = (config.model, config.revision, config.method == "magicseg", str(device), config.dtype)
            if key not in models:  # one load per checkpoint; training-free methods share its CLIP and text cache
                model, processor = load_method_model(config.model, config.revision, config.method)
                models[key] = (model.to(device=device, dtype=resolve_dtype(config.dtype, device)).eval(), processor)
            model, processor = models[key]
            if config.method != "magicseg" and model.method != config.method:
                model = model.with_method(config.method)
            predictor = BenchmarkPredictor.for_benchmark(  # one text encoding per (model, class list)
                model, processor, benchmark, protocols[cell], batch_size=config.batch_size, method=config.method,
                threshold=config.threshold if config.method != "magicseg" else None,
            )
            runs.append([cell, predictor, MeanIoUAccumulator(benchmark.num_labels, benchmark.ignore_index), 0.0, model])
        cell_start = time.perf_counter()
        for chunk in _chunks(benchmark, IMAGES_PER_CHUNK):  # each image decoded once for every pending cell
            for run in runs:
                tick = time.perf_counter()
                for sample, prediction in run[1].predict(chunk):
                    run[2].update(prediction, sample.label)
                run[3] += time.perf_counter() - tick
        check_something_scored(benchmark, runs[0][2])  # every cell scores the same labels
        for cell, predictor, accumulator, seconds, model in runs:
            results = results_dict(
                cell.config, benchmark, protocols[cell], predictor, accumulator, model,
                wall_time_seconds=time.perf_counter() - cell_start, inference_seconds=seconds, overlays=[],
            )  # fmt: skip
            results["suite"] = {"row": cell.row, "column": cell.column}
            cell.output.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(cell.output)
            atomic_write_json(cell.output, results)
            logger.info("suite: %s on %s: mIoU %s -> %s", cell.row, cell.column, results["mean_iou_percent"],
                        cell.output)
    table = comparison_table(cells)
    markdown = output_dir / "comparison.md"
    atomic_write_bytes(markdown, table_markdown(table).encode("utf-8"))
    picture = output_dir / "comparison.png"
    atomic_write_image(picture, comparison_chart(table))
    cards = update_cards(cells, table, Path(path).name) if update_card else []
    for card in cards:
        logger.info("suite: comparison table and results put into the model card %s", card)
    wall = round(time.perf_counter() - start, 2)
    logger.info("suite: %d cells (%d computed, %d kept) in %.1f s -> %s, %s", len(cells), len(pending), skipped,
                wall, markdown, picture)
    return {"cells": len(cells), "computed": len(pending), "skipped": skipped, "wall_time_seconds": wall,
            "comparison_md": str(markdown), "comparison_png": str(picture), "cards": [str(card) for card in cards]}


@dataclass
class ComparisonTable:
    """Rows (methods), columns (benchmarks) and per cell ``(mIoU percent or None, protocol name)``."""

    rows: list[str]
    columns: list[str]
    values: dict[tuple[str, str], tuple[float | None, str]]


def comparison_table(cells: Sequence[Cell]) -> ComparisonTable:
    """The table of the cells' results files (a cell without one is left empty)."""
    rows: list[str] = []
    columns: list[str] = []
    values: dict[tuple[str, str], tuple[float | None, str]] = {}
    for cell in cells:
        rows += [cell.row] if cell.row not in rows else []
        columns += [cell.column] if cell.column not in columns else []
        try:
            results = json.loads(cell.output.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        protocol = results["protocol"]["name"] + (f"+{results['refine']}" if results.get("refine") else "")
        values[(cell.row, cell.column)] = (results.get("mean_iou_percent"), protocol)
    return ComparisonTable(rows, columns, values)


def table_markdown(table: ComparisonTable) -> str:
    """A paper-style table: rows methods, columns benchmarks, each cell ``mIoU (protocol)``."""
    from magicseg_hf.cards.model import comparison_cell

    lines = ["| method | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for row in table.rows:
        cells = []
        for column in table.columns:
            value = table.values.get((row, column))
            cells.append("—" if value is None else comparison_cell(*value))  # the card's cell, written once
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "mIoU (%), each cell with its protocol\n\n" + "\n".join(lines) + "\n"


def comparison_chart(table: ComparisonTable, bar_width: int = 22, height: int = 320) -> Any:
    """Grouped bars (one group per benchmark, one bar per method, 0-100 % mIoU) with a legend, as a PIL image."""
    from PIL import Image, ImageDraw

    from magicseg_hf.visualization import class_color, get_font

    font = get_font(12)
    left, top, bottom, gap = 40, 30, 40, 24
    group = bar_width * max(1, len(table.rows)) + gap
    legend_width = 12 + max((int(font.getlength(row)) for row in table.rows), default=0) + 30
    width = left + group * max(1, len(table.columns)) + legend_width
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    plot = height - top - bottom
    draw.text((4, 4), "mIoU (%)", fill="black", font=font)
    for tick in range(0, 101, 20):
        y = top + plot - plot * tick // 100
        draw.line([(left, y), (left + group * len(table.columns), y)], fill=(225, 225, 225))
        draw.text((4, y - 7), str(tick), fill="black", font=font)
    for c, column in enumerate(table.columns):
        x0 = left + gap // 2 + c * group
        for r, row in enumerate(table.rows):
            value = table.values.get((row, column), (None, ""))[0]
            if value is None:
                continue
            x = x0 + r * bar_width
            y = top + plot - int(round(plot * max(0.0, min(100.0, value)) / 100))
            draw.rectangle([x, y, x + bar_width - 3, top + plot], fill=class_color(r + 1), outline="black")
        draw.text((x0, top + plot + 8), column, fill="black", font=font)
    draw.line([(left, top + plot), (left + group * len(table.columns), top + plot)], fill="black")
    lx = left + group * len(table.columns) + 10
    for r, row in enumerate(table.rows):
        y = top + r * 18
        draw.rectangle([lx, y, lx + 12, y + 12], fill=class_color(r + 1), outline="black")
        draw.text((lx + 18, y - 1), row, fill="black", font=font)
    return image


__all__ = [
    "Cell",
    "ComparisonTable",
    "comparison_chart",
    "comparison_table",
    "load_suite",
    "card_folders",
    "run_suite",
    "update_cards",
    "table_markdown",
]
