"""The card of an export folder (what the label values mean, where the rows come from, how to train)
and the mmsegmentation config snippet of an ``mmseg`` export.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from magicseg_hf.export import (
    BACKGROUND_NAME,
    EXPORT_FILE,
    ID2LABEL_FILE,
    LABEL2ID_FILE,
    MMSEG_CONFIG_FILE,
    SEMANTIC,
    SOURCE_GENERATION_FILE,
)
from magicseg_hf.export.labels import semantic_features
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.labels import UNKNOWN
from magicseg_hf.runtime import recorded_versions
from magicseg_hf.schema import DATA_DIR


# ----------------------------------------------------------------------------------------------
# Cards and config files
# ----------------------------------------------------------------------------------------------
def palette(num_classes: int) -> list[list[int]]:
    """``num_classes + 1`` RGB colours (background black first), distinct and stable."""
    colours = [[0, 0, 0]]
    for k in range(1, num_classes + 1):
        colours.append([(k * 67 + 40) % 256, (k * 151 + 90) % 256, (k * 227 + 160) % 256])
    return colours


def mmseg_config_text(vocabulary: Sequence[str]) -> str:
    """The ``mmseg_config.py`` snippet: classes and palette (``metainfo``) and the dataset settings
    of mmsegmentation 1.x's ``BaseSegDataset`` (0.x's ``CustomDataset`` in a comment)."""
    classes = (BACKGROUND_NAME, *vocabulary)
    return (
        "# mmsegmentation dataset settings for a `magicseg export --format mmseg` folder.\n"
        "# Label values: 0 background, k = classes[k] (vocabulary.txt line k), 255 unknown (ignored).\n"
        "dataset_type = 'BaseSegDataset'\n"
        "# The folder this file is in (mmengine / mmcv expand {{fileDirname}} when they read the config), so\n"
        "# the snippet holds no local path and still works after a push and a download.\n"
        "data_root = '{{fileDirname}}'\n"
        f"metainfo = dict(\n    classes={classes!r},\n    palette={palette(len(vocabulary))!r},\n)\n"
        "train_dataset = dict(\n    type=dataset_type, data_root=data_root, metainfo=metainfo,\n"
        "    data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),\n"
        "    img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index=255)\n"
        "val_dataset = dict(\n    type=dataset_type, data_root=data_root, metainfo=metainfo,\n"
        "    data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),\n"
        "    img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False, ignore_index=255)\n"
        f"num_classes = {len(classes)}  # decode_head=dict(num_classes=num_classes)\n"
        "# mmsegmentation 0.x: dict(type='CustomDataset', data_root=data_root, img_dir='img_dir/train',\n"
        "#     ann_dir='ann_dir/train', img_suffix='.jpg', seg_map_suffix='.png', classes=metainfo['classes'],\n"
        "#     palette=metainfo['palette'], reduce_zero_label=False, ignore_index=255)\n"
    )


def source_license(source: DatasetFolder) -> str:
    """The source card's ``license`` (the images keep it), ``other`` when it has none."""
    try:
        from huggingface_hub import DatasetCard

        return str(DatasetCard.load(source.card_path).data.to_dict().get("license") or "other")
    except Exception:  # noqa: BLE001 - no card or no metadata: the licence is unknown
        return "other"


def render_export_card(out: Path, record: dict[str, Any], vocabulary: Sequence[str], repo_id: str | None = None) -> str:
    """The ``README.md`` of an export folder: metadata (for ``semantic``: the ``configs`` and
    ``dataset_info`` that make ``load_dataset`` return the export's features), what the label values
    mean, where the rows come from (the source folder and its ``generation.json``), how to train."""
    import datasets
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from magicseg_hf.cards import size_category
    from magicseg_hf.folder import CARD_DATA_FILES

    fmt = record["format"]
    num_rows = int(record["num_rows"])
    data = DatasetCardData(
        license=record.get("license") or "other",
        task_categories=["image-segmentation"],
        task_ids=["semantic-segmentation"],
        size_categories=[size_category(num_rows)],
        pretty_name=f"MagicSeg synthetic segmentation, global labels ({len(vocabulary)} classes, {fmt})",
        tags=["synthetic", "magicseg", "semantic-segmentation", f"magicseg-export-{fmt}"],
    )
    if fmt == SEMANTIC:
        MetadataConfigs({"default": {"data_files": [{"split": "train", "path": CARD_DATA_FILES}]}}).to_dataset_card_data(data)
        size = sum(p.stat().st_size for p in (out / DATA_DIR).glob("*.parquet"))
        info = datasets.DatasetInfo(
            features=semantic_features(bool(record.get("with_counterfactual"))),
            splits=datasets.SplitDict.from_split_dict([{"name": "train", "num_bytes": size, "num_examples": num_rows}]),
            download_size=size,
            dataset_size=size,
        )
        DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    ref = repo_id or "USER/NAME"
    shown = ", ".join(f"{k + 1} = {name}" for k, name in enumerate(vocabulary[:12]))
    more = f", … ({len(vocabulary)} classes; all in `{ID2LABEL_FILE}`)" if len(vocabulary) > 12 else ""
    lines = [
        f"# MagicSeg data with global labels ({fmt})",
        "",
        f"**{num_rows} rows** exported by `magicseg export --format {fmt}` (magicseg-hf "
        f"{recorded_versions(record).get('magicseg_hf', '?')}) from the MagicSeg dataset folder `{Path(record['source']).name}`. "
        f"Its generation settings are copied in [`{SOURCE_GENERATION_FILE}`]({SOURCE_GENERATION_FILE}).",
        "",
        "## Label values",
        "",
        "Unlike a MagicSeg folder (where `label` value *i* is that row's `classes[i-1]`), every label here "
        "uses one global id per class:",
        "",
        "| value | meaning |",
        "|---|---|",
        f"| 0 | {BACKGROUND_NAME} (no target class) |",
        f"| 1..{len(vocabulary)} | `vocabulary.index(name) + 1`: {shown}{more} |",
        f"| {UNKNOWN} | unknown: ignore it in the loss and the metric |",
        "",
        f"`{ID2LABEL_FILE}` and `{LABEL2ID_FILE}` (at the root) name every id; background is class 0, so train "
        "with `do_reduce_labels=False` (mmseg: `reduce_zero_label=False`) and ignore index 255.",
        "",
    ]
    if fmt == SEMANTIC:
        columns = "`id`, `image`, `label` (mode \"L\")" + (
            ", `counterfactual_image`" if record.get("with_counterfactual") else "")
        lines += [
            "## Use",
            "",
            f"One split, `train`; columns {columns}. This is the layout of transformers' semantic-segmentation "
            "recipe (`examples/pytorch/semantic-segmentation`):",
            "",
            "```bash",
            f"python run_semantic_segmentation.py --dataset_name {ref} --do_reduce_labels False \\",
            "    --model_name_or_path nvidia/mit-b0 --output_dir segformer --do_train --do_eval",
            "```",
            "",
            "```python",
            "import json",
            "from datasets import load_dataset",
            "from huggingface_hub import hf_hub_download",
            f'dataset = load_dataset("{ref}", split="train")',
            f'path = hf_hub_download("{ref}", "{ID2LABEL_FILE}", repo_type="dataset")',
            "id2label = {int(k): v for k, v in json.load(open(path)).items()}  # as the recipe reads it",
            "```",
        ]
    else:
        splits = ", ".join(f"{count} {name}" for name, count in (record.get("splits") or {}).items())
        lines += [
            "## Use",
            "",
            "`img_dir/{train,val}/*.jpg` and `ann_dir/{train,val}/*.png` (same file stem = same row; the split "
            f"is chosen by a hash of the row id: {splits}). `{MMSEG_CONFIG_FILE}` holds the class "
            "list, the palette and the dataset settings for mmsegmentation's `BaseSegDataset`.",
        ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"))


def render_export_card_for(folder: str | Path, repo_id: str | None = None) -> bytes:
    """The card of finished export folder ``folder``, re-rendered with ``repo_id`` in its examples
    (what ``magicseg push`` publishes); reads only."""
    root = Path(folder)
    record = json.loads((root / EXPORT_FILE).read_text(encoding="utf-8"))
    names = json.loads((root / ID2LABEL_FILE).read_text(encoding="utf-8"))
    vocabulary = [names[str(k)] for k in range(1, len(names))]
    return render_export_card(root, record, vocabulary, repo_id=repo_id).encode("utf-8")

