"""The reference catalogue: which products exist and the category of each.

Products and categories are the operator's reference data (``ecom catalog load FILE``, stored in
the ``products`` table by resources/catalogue.py), not constants: the catalogue rules
(contract.CATALOGUE_RULES) judge rows against it, and enrichment fills a missing category from
it. Held as two Arrow arrays, so it is pickled into Spark's tasks as a few buffers and looked up
with one hash kernel per column.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

Column = pa.Array | pa.ChunkedArray


@dataclass(frozen=True)
class Catalogue:
    """Products (unique ids) and the category of each; categories are lower-case codes."""

    product_ids: pa.Array
    categories: pa.Array

    @classmethod
    def of(cls, products: dict[int, str]) -> Catalogue:
        ids = sorted(products)
        return cls(pa.array(ids, pa.int64()), pa.array([products[i] for i in ids], pa.string()))

    @property
    def category_names(self) -> pa.Array:
        return pc.unique(self.categories)

    def has_product(self, product_id: Column) -> Column:
        """True where the id is a catalogue product; False for NULL."""
        return pc.is_in(product_id, value_set=self.product_ids)

    def has_category(self, category: Column) -> Column:
        """True where the category is one of the catalogue's; False for NULL."""
        return pc.is_in(category, value_set=self.category_names)

    def category_of(self, product_id: Column) -> Column:
        """The catalogue's category of each product id; NULL for others."""
        return pc.take(self.categories, pc.index_in(product_id, value_set=self.product_ids))
