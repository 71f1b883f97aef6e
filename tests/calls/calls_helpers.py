"""Reading the calls table in tests."""
from __future__ import annotations

import pandas as pd


def by_name(df: pd.DataFrame) -> dict[str, pd.Series]:
    """The last row of each name."""
    return {r["name"]: r for _, r in df.iterrows()}


def parent_of(df: pd.DataFrame, name: str) -> str | None:
    rows = {r["call"]: r for _, r in df.iterrows()}
    p = by_name(df)[name]["parent"]
    return None if pd.isna(p) else rows[int(p)]["name"]
