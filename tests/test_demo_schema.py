"""Every demo generator writes frames that fit the schema: known columns, required ones filled."""

from __future__ import annotations

from datetime import datetime

import pytest

from mlkit.toolkit import schema
from mlkit.toolkit.demo import market, shop
from mlkit.toolkit.demo.params import DemoParams

PARAMS = DemoParams(seed=2, orders=3000, days=14, start=datetime(2026, 1, 1), world_orders=3000)


@pytest.mark.parametrize("generator", [market, shop], ids=lambda module: module.__name__)
def test_frames_have_schema_columns_and_every_required_one_filled(generator):
    for name, frame in generator.generate(PARAMS, None).items():
        table = schema.metadata.tables[name]
        assert set(frame.columns) <= set(table.columns.keys()), name
        required = {c.name for c in table.columns if not c.nullable}
        assert required <= set(frame.columns), name
        assert not frame[list(required)].isna().any().any(), name
