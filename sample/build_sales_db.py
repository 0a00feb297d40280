"""Writes ``sample/sales.db``: Acme Robotics' fictional sales (customers, products, orders) for the
agent's query_database tool, with the same rows every time.
Run: ``.venv/bin/python sample/build_sales_db.py``.

Question -> SQL examples for the model are in ``text2sql_examples.yaml`` next to it.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

SALES_DB = Path(__file__).resolve().parent / "sales.db"
EXAMPLES = Path(__file__).resolve().parent / "text2sql_examples.yaml"
SEED = 2026

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    segment TEXT NOT NULL,          -- enterprise, mid-market or small business
    created_at DATE NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,         -- robot arm, gripper, sensor, software or service plan
    unit_price REAL NOT NULL        -- list price in USD
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL,
    total REAL NOT NULL,            -- USD, after discount
    order_date DATE NOT NULL,
    status TEXT NOT NULL            -- shipped, pending or cancelled
);
"""

PRODUCTS = [
    ("AR-200 robot arm", "robot arm", 18500.0),
    ("AR-400 robot arm", "robot arm", 32000.0),
    ("AR-900 heavy robot arm", "robot arm", 61000.0),
    ("SoftGrip gripper", "gripper", 2400.0),
    ("VacuGrip suction gripper", "gripper", 1900.0),
    ("TwinFinger gripper", "gripper", 3100.0),
    ("Vision-3D camera", "sensor", 4200.0),
    ("ForceSense wrist sensor", "sensor", 2750.0),
    ("SafeZone lidar", "sensor", 5600.0),
    ("FleetOS licence", "software", 9000.0),
    ("PathPlanner licence", "software", 4500.0),
    ("SimStudio licence", "software", 3800.0),
    ("Basic service plan", "service plan", 1200.0),
    ("Premium service plan", "service plan", 4800.0),
    ("On-site training day", "service plan", 2200.0),
]
COUNTRIES = [
    "United States", "Germany", "France", "Japan", "United Kingdom", "Canada", "Netherlands", "Italy"
]
SEGMENTS = ["enterprise", "mid-market", "small business"]
NAME_PARTS = (
    ["Nordic", "Atlas", "Blue", "Summit", "Pioneer", "Vector", "Harbor", "Crescent", "Granite", "Orbit"],
    ["Manufacturing", "Logistics", "Foods", "Motors", "Pharma", "Electronics", "Packaging", "Metals"],
)


def build(path: Path) -> Path:
    """Writes the database to ``path`` (replacing it) and returns the path."""
    rng = random.Random(SEED)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA)
        connection.executemany(
            "INSERT INTO products (id, name, category, unit_price) VALUES (?, ?, ?, ?)",
            [(i, *p) for i, p in enumerate(PRODUCTS, 1)],
        )
        customers = []
        names = [f"{a} {b}" for a in NAME_PARTS[0] for b in NAME_PARTS[1]]
        rng.shuffle(names)
        for i, name in enumerate(names[:60], 1):
            created = date(2024, 1, 1) + timedelta(days=rng.randrange(700))
            customers.append((i, name, rng.choice(COUNTRIES), rng.choice(SEGMENTS), created.isoformat()))
        connection.executemany(
            "INSERT INTO customers (id, name, country, segment, created_at) VALUES (?, ?, ?, ?, ?)", customers
        )
        orders = []
        for i in range(1, 401):
            customer = rng.randrange(1, len(customers) + 1)
            product = rng.randrange(1, len(PRODUCTS) + 1)
            quantity = rng.choice([1, 1, 1, 2, 2, 3, 4, 5, 10])
            discount = rng.choice([0.0, 0.0, 0.05, 0.1, 0.15])
            total = round(PRODUCTS[product - 1][2] * quantity * (1 - discount), 2)
            ordered = date(2025, 1, 1) + timedelta(days=rng.randrange(638))  # up to 2026-09-30
            status = rng.choices(["shipped", "pending", "cancelled"], weights=[80, 12, 8])[0]
            orders.append((i, customer, product, quantity, total, ordered.isoformat(), status))
        connection.executemany(
            "INSERT INTO orders (id, customer_id, product_id, quantity, total, order_date, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            orders,
        )
        connection.commit()
        connection.execute("VACUUM")
    finally:
        connection.close()
    return path


if __name__ == "__main__":
    out = build(Path(sys.argv[1]) if len(sys.argv) > 1 else SALES_DB)
    print(f"wrote {out}")
