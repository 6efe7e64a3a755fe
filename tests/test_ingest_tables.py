"""`mlkit ingest orders|labels|events|products|interactions` on every dialect: a CSV export
upserted into mlkit's table (a second run changes nothing, a corrected row updates), a bad
line named with nothing written, `--map`, stdin, and imported orders and labels seen by
`etl run` and `dataset build fraud`."""

from __future__ import annotations

import json

import sqlalchemy as sa

from mlkit.toolkit import schema
from mlkit.toolkit.fraud.labels import label_query

ORDERS = """transaction_id,wallet_address,event_id,price_paid,timestamp,payment_method
{base}1,0xaa{base},7{base},50.5,2024-01-01T10:00:00Z,card
{base}2,0xbb{base},7{base},60,1704110400,crypto
{base}3,0xaa{base},7{base},70,2024-01-01 12:30:00,card
"""
MAPS = ("--map", "order_id=transaction_id", "--map", "buyer_wallet_id=wallet_address")


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def ingest(engine, kind: str, path, *extra: str, stdin: str | None = None):
    """Run `mlkit ingest <kind> --json`; returns (exit code, document or None, output)."""
    from typer.testing import CliRunner

    from mlkit.commands.main import app

    args = ["--database", url_of(engine), "ingest", kind, "--csv", str(path), *extra, "--json"]
    result = CliRunner().invoke(app, args, input=stdin)
    document = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, document, result.stdout + result.stderr


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def count(engine, table: sa.Table, *where) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        return conn.execute(query.where(*where) if where else query).scalar_one()


def rows(engine, query) -> list:
    with engine.connect() as conn:
        return conn.execute(query).all()


def test_orders_upsert_idempotent_and_corrected(engine, tmp_path):
    path = write(tmp_path, "orders.csv", ORDERS.format(base=10))
    code, first, out = ingest(engine, "orders", path, *MAPS)
    assert code == 0, out
    assert first["table"] == "orders"
    assert (first["rows_read"], first["inserted"], first["updated"], first["skipped"]) == (
        3,
        3,
        0,
        0,
    )
    o, w = schema.orders, schema.wallets
    stored = rows(engine, sa.select(o).where(o.c.order_id.between(101, 103)).order_by("order_id"))
    assert [r.price for r in stored] == [50.5, 60.0, 70.0]
    assert str(stored[1].created_at) == "2024-01-01 12:00:00"  # epoch seconds, UTC
    assert [r.status for r in stored] == ["completed"] * 3
    # One wallet per address, dated by its first order; both orders of 0xaa10 share it.
    wallets = dict(
        rows(engine, sa.select(w.c.address, w.c.wallet_id).where(w.c.address.like("%10")))
    )
    assert set(wallets) == {"0xaa10", "0xbb10"}
    assert stored[0].buyer_wallet_id == stored[2].buyer_wallet_id == wallets["0xaa10"]

    code, again, out = ingest(engine, "orders", path, *MAPS)
    assert code == 0, out
    assert (again["inserted"], again["updated"], again["skipped"]) == (0, 0, 3)
    assert count(engine, w, w.c.address.like("%10")) == 2

    corrected = ORDERS.format(base=10).replace("70,2024", "75,2024")
    code, third, out = ingest(engine, "orders", write(tmp_path, "fixed.csv", corrected), *MAPS)
    assert code == 0, out
    assert (third["inserted"], third["updated"], third["skipped"]) == (0, 1, 2)
    assert rows(engine, sa.select(o.c.price).where(o.c.order_id == 103)) == [(75.0,)]


def test_bad_line_named_and_nothing_written(engine, tmp_path):
    bad = ORDERS.format(base=20).replace("60,1704110400", "sixty,1704110400")
    code, _, out = ingest(engine, "orders", write(tmp_path, "bad.csv", bad), *MAPS)
    assert code == 1
    assert "line 3: column price: 'sixty' is not a number" in out
    assert "nothing was written" in out
    assert count(engine, schema.orders, schema.orders.c.order_id.between(201, 203)) == 0
    assert count(engine, schema.wallets, schema.wallets.c.address.like("%20")) == 0

    late = ORDERS.format(base=21).replace("2024-01-01 12:30:00", "2024-13-45 12:30:00")
    code, _, out = ingest(engine, "orders", write(tmp_path, "late.csv", late), *MAPS)
    assert code == 1 and "line 4: column created_at" in out


def test_failure_inside_the_transaction_rolls_back_new_wallets(engine, tmp_path):
    # The wallet is created in the transaction, then an unknown order fails the file.
    labels = "order_id,reported_at,wallet\n999991,2024-01-03T00:00:00Z,0xnew30\n"
    code, _, out = ingest(engine, "labels", write(tmp_path, "labels.csv", labels))
    assert code == 1
    assert "line 2: order 999991 is not in orders" in out
    assert count(engine, schema.wallets, schema.wallets.c.address == "0xnew30") == 0
    assert count(engine, schema.security_alerts, schema.security_alerts.c.order_id == 999991) == 0


def test_labels_carry_the_time_they_became_known(engine, tmp_path):
    assert ingest(engine, "orders", write(tmp_path, "o.csv", ORDERS.format(base=40)), *MAPS)[0] == 0
    labels = "order_id,reported_at,is_fraud\n402,2024-01-05T00:00:00Z,true\n403,2024-01-06,no\n"
    path = write(tmp_path, "labels.csv", labels)
    code, first, out = ingest(engine, "labels", path)
    assert code == 0, out
    assert first["table"] == "security_alerts"
    assert (first["inserted"], first["skipped"]) == (2, 0)
    assert ingest(engine, "labels", path)[1]["skipped"] == 2
    o = schema.orders
    buyer = rows(engine, sa.select(o.c.buyer_wallet_id).where(o.c.order_id == 402))[0][0]
    found = rows(engine, label_query(wallet_ids=[buyer]))
    # Only the confirmed label counts, from the moment it became known.
    assert [(r.order_id, str(r.label_available_at)) for r in found] == [
        (402, "2024-01-05 00:00:00")
    ]


def test_a_wallet_seen_earlier_is_dated_back(engine, tmp_path):
    assert ingest(engine, "orders", write(tmp_path, "a.csv", ORDERS.format(base=60)), *MAPS)[0] == 0
    earlier = "order_id,buyer_wallet_id,event_id,price,created_at\n609,0xbb60,7,5,2023-12-30\n"
    assert ingest(engine, "orders", write(tmp_path, "b.csv", earlier))[0] == 0
    w = schema.wallets
    dated = rows(engine, sa.select(w.c.created_at).where(w.c.address == "0xbb60"))
    assert str(dated[0][0]) == "2023-12-30 00:00:00"


def test_a_label_known_before_its_order_is_refused(engine, tmp_path):
    assert ingest(engine, "orders", write(tmp_path, "o.csv", ORDERS.format(base=70)), *MAPS)[0] == 0
    labels = "order_id,reported_at\n701,2024-01-05\n702,2023-12-31T23:00:00\n"
    code, _, out = ingest(engine, "labels", write(tmp_path, "l.csv", labels))
    assert code == 1
    assert "line 3: column label_available_at: 2023-12-31 23:00:00 is before order 702" in out
    a = schema.security_alerts
    assert count(engine, a, a.c.order_id.between(701, 703)) == 0


def test_string_ids_are_refused_with_what_to_do(engine, tmp_path):
    text = "order_id,buyer_wallet_id,event_id,price,created_at\ntx-abc,0x1,5,10,2024-01-01\n"
    code, _, out = ingest(engine, "orders", write(tmp_path, "s.csv", text))
    assert code == 1
    assert "line 2: column order_id: 'tx-abc' is not an integer" in out
    assert "--map" in out and "sources:" in out


def test_missing_column_lists_the_accepted_names(engine, tmp_path):
    text = "id,wallet,when\n1,0x1,2024-01-01\n"
    code, _, out = ingest(engine, "orders", write(tmp_path, "m.csv", text))
    assert code == 1
    assert "missing column(s) buyer_wallet_id, event_id, price, created_at" in out
    assert "price: price/price_paid/amount" in out and "--map" in out


def test_events_products_and_interactions(engine, tmp_path):
    events = (
        "event_id,title,face_value,capacity,event_date,on_sale\n"
        "501,Show,40,1000,2024-03-01T20:00:00,2024-01-01\n"
    )
    path = write(tmp_path, "events.csv", events)
    code, doc, out = ingest(engine, "events", path, "--map", "base_price=face_value")
    assert code == 0, out
    assert (doc["table"], doc["inserted"]) == ("events", 1)
    e = schema.events
    stored = rows(engine, sa.select(e).where(e.c.event_id == 501))[0]
    assert (stored.name, stored.base_price, stored.event_type) == ("Show", 40.0, "other")
    assert stored.created_at == stored.sale_start
    assert ingest(engine, "events", path, "--map", "base_price=face_value")[1]["skipped"] == 1

    products = "sku_id,name,category,price,gender\n601,Shirt,tops,19.9,female\n602,Cap,hats,9,\n"
    path = write(tmp_path, "products.csv", products)
    code, doc, out = ingest(engine, "products", path, "--map", "product_id=sku_id")
    assert code == 0, out
    p = schema.products
    genders = rows(engine, sa.select(p.c.gender).where(p.c.product_id > 600).order_by("product_id"))
    assert genders == [("F",), ("U",)]
    again = ingest(engine, "products", path, "--map", "product_id=sku_id")[1]
    assert (again["inserted"], again["updated"], again["skipped"]) == (0, 0, 2)

    clicks = (
        "user_id,product_id,action,timestamp,rating\n"
        "7001,601,view,1704067200000,\n"
        "7001,601,Add to cart,1704067260000,\n"
        "7001,602,rate,1704067320000,4\n"
    )
    code, doc, out = ingest(
        engine, "interactions", "-", "--map", "interaction_type=action", stdin=clicks
    )
    assert code == 0, out
    assert (doc["file"], doc["inserted"]) == ("stdin", 3)
    i = schema.product_interactions
    kinds = rows(
        engine, sa.select(i.c.interaction_type).where(i.c.user_id == 7001).order_by(i.c.created_at)
    )
    assert kinds == [("view",), ("add_to_cart",), ("rate",)]
    again = ingest(engine, "interactions", "-", "--map", "interaction_type=action", stdin=clicks)
    assert again[1]["skipped"] == 3 and count(engine, i, i.c.user_id == 7001) == 3

    unknown = "user_id,product_id,interaction_type,created_at\n7002,699,view,2024-01-01\n"
    code, _, out = ingest(engine, "interactions", "-", stdin=unknown)
    assert code == 1 and "line 2: product 699 is not in products" in out


def test_duplicate_keys_in_one_file_are_named(engine, tmp_path):
    text = ORDERS.format(base=50).replace("502,", "501,")
    code, _, out = ingest(engine, "orders", write(tmp_path, "d.csv", text), *MAPS)
    assert code == 1
    assert "line 3: duplicate order_id=501 (first on line 2)" in out
    assert count(engine, schema.orders, schema.orders.c.order_id.between(501, 503)) == 0


def platform_export(tmp_path):
    """A platform's orders (wallet addresses, its own headers) and its chargeback labels,
    each confirmed 1 to 12 days after the order: four of forty wallets are fraudulent.
    Returns both files and each label's (order time, time known)."""
    import random
    from datetime import datetime, timedelta

    rng = random.Random(3)
    start = datetime(2024, 3, 1)
    orders = ["transaction_id,wallet_address,event_id,price_paid,timestamp,payment_method"]
    labels = ["transaction_id,confirmed_at,is_fraud"]
    known = []
    for order_id in range(1, 301):
        wallet = rng.randrange(40)
        moment = start + timedelta(minutes=rng.randrange(60 * 24 * 20))
        price = round(rng.uniform(20, 80) * (2.5 if wallet < 4 else 1), 2)
        method = rng.choice(["card", "crypto"])
        orders.append(
            f"{order_id},0x{wallet:040x},{1 + rng.randrange(4)},{price},{moment.isoformat()}Z,"
            f"{method}"
        )
        if wallet < 4:
            confirmed = moment + timedelta(hours=rng.randrange(24, 24 * 12))
            labels.append(f"{order_id},{confirmed.isoformat()}Z,true")
            known.append((moment, confirmed))
    return (
        write(tmp_path, "orders.csv", "\n".join(orders) + "\n"),
        write(tmp_path, "labels.csv", "\n".join(labels) + "\n"),
        known,
    )


def test_imported_orders_and_labels_reach_the_training_set(cli, tmp_path):
    from datetime import datetime, timedelta

    orders, labels, known = platform_export(tmp_path)
    n_labels = len(known)
    database = ("--database", f"sqlite:///{tmp_path}/platform.db")

    def run(*args: str) -> dict:
        result = cli(*database, *args, "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    assert run("ingest", "orders", "--csv", str(orders), *MAPS)["inserted"] == 300
    assert run("ingest", "labels", "--csv", str(labels))["inserted"] == n_labels
    etl = run("etl", "run")
    assert (etl["rows"], etl["labelled_rows"]) == (300, n_labels)
    dataset = run("dataset", "build", "fraud")
    assert dataset["rows"] == 300
    assert dataset["label_counts"] == {"0": 300 - n_labels, "1": n_labels}
    # A label counts only from the time it became known.
    cutoff = datetime(2024, 3, 18)
    early = run("dataset", "build", "fraud", "--label-cutoff", cutoff.isoformat())
    old_enough = [(t, k) for t, k in known if t < cutoff - timedelta(days=7)]
    counted = sum(k <= cutoff for _, k in old_enough)
    assert 0 < counted < len(old_enough)
    assert early["label_counts"]["1"] == counted
