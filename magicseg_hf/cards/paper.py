"""What every card of this project cites: the MagicSeg paper.

Shared by the dataset-card renderer, the ``MagicSeg`` builder's ``DatasetInfo`` and, next, the
model-card renderer.
"""

from __future__ import annotations

PAPER_URL = "https://arxiv.org/abs/2603.19575"
PAPER_CITATION = """\
@article{cai2026magicseg,
  title   = {MagicSeg: Open-World Segmentation Pretraining via Counterfactural Diffusion-Based Auto-Generation},
  author  = {Cai, Kaixin and Ren, Pengzhen and Han, Jianhua and Zhu, Yi and Xu, Hang and Liu, Jianzhuang and Liang, Xiaodan},
  journal = {arXiv preprint arXiv:2603.19575},
  year    = {2026}
}"""
