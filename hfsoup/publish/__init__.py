"""Publishing a result: its model card and tables, its `soup.yaml`, and the push of a soup folder.

Everything here renders or sends what a [`MergeResult`] holds; nothing is measured.
"""

from .card import build_card, write_card_files
from .push import push_soup, soup_folder
from .soup_yaml import soup_yaml

__all__ = ["build_card", "push_soup", "soup_folder", "soup_yaml", "write_card_files"]
