"""The event generator: realistic shop traffic as CSV files, with known anomalies and late events.

Run it as its own process: ``python -m generator`` (``--help`` lists the flags; defaults come
from the ``ECOM_GENERATOR_*`` settings). It writes ``events_<UTC stamp>_<8 hex>.csv``, e.g.
``events_20260129T103020123456Z_1a2b3c4d.csv``, into the input directory: 100 events every 5 s
by default, ``--files N`` then exit, or ``--burst N`` events as fast as possible. Each file is
written to a hidden ``.<name>.tmp`` in the same directory, fsynced and renamed, so readers never
see a partial file. Logs go to ``<log_dir>/data_generator_YYYYMMDD.log`` (UTC) and stderr.
Exit codes: 0 done or stopped by SIGINT/SIGTERM (final statistics logged), 2 bad settings or an
output, truth or log location that cannot be written (no partial file is left behind).

Columns (the header is the schema version's column order)
    v1: event_id, user_id, event_type, product_id, price, event_time
    v2: v1 + session_id, category, quantity, user_segment
    v3: v2 + device_type, browser, geo_country, geo_city, referrer, campaign_id
``event_id`` and ``session_id`` are version-4 UUIDs; ``user_id`` is an integer, 0 for anonymous
visitors; ``event_time`` is UTC with microseconds, ``2026-01-29T10:30:20.123456+00:00``;
``price`` has 2 decimals and ``quantity`` is 1-5, both only on add_to_cart and purchase (else
empty); ``user_segment`` is empty for anonymous visitors; ``campaign_id`` is empty when none.

Value sets (weights in catalog.py)
    event types: logged-in users view ~55 %, search ~15 %, add_to_cart ~12 %, wishlist ~6 %,
        remove_from_cart ~4 % (only with something in the cart), purchase ~8 %, varied by
        segment (premium buy most, inactive and at_risk least); anonymous visitors (30 % of
        visits) only view (78 %) and search (22 %).
    user_segment: new, returning, premium, inactive, at_risk, a fixed function of user_id.
    products: the 12 categories of catalog.CATEGORIES (the demo catalogue, which
        `--write-catalogue FILE` writes for `ecom catalog load`), each with its
        product-id range; every product has one fixed price inside its category's price range
        (the same in every run). A visit mostly stays in one category; add_to_cart fills a cart
        that remove_from_cart and purchase take from.
    device_type: mobile, desktop, tablet; browser by device: chrome, safari, edge, firefox,
        opera, samsung_internet.
    geo_country / geo_city: ISO 3166 alpha-2 code and a city of it: US New York, Los Angeles,
        Chicago; GB London, Manchester; DE Berlin, Munich; FR Paris, Lyon; ES Madrid; IT Milan;
        NL Amsterdam; PL Warsaw; SE Stockholm; CA Toronto; BR Sao Paulo; IN Bengaluru; JP Tokyo;
        AU Sydney.
    referrer: direct, google, bing, facebook, instagram, tiktok, newsletter, affiliate.
    campaign_id: newsletter and affiliate visits always carry one (cmp-newsletter-weekly,
        cmp-affiliate-tech, ...); search and social visits in 35 % of cases (seasonal cmp-2026-*
        or cmp-retargeting); direct visits never.
Sessions: 40 visits are open at once and events interleave; a visit has ~8 events. A user's
session_id (and v3 context) changes when more than 30 minutes pass between two of their events.

Anomalies (``--anomaly-rate``, default 2 %) each break exactly one rule of
contract.ErrorCode; the truth file says whether the contract in force (ECOM_CONTRACT_FILE) makes
it an error or a warning. The kind is drawn uniformly among those the file's version can carry:
    missing_event_id MISSING_EVENT_ID, invalid_event_id INVALID_EVENT_ID,
    duplicate_event_id DUPLICATE_EVENT_ID (exact copy of an earlier row of the same file),
    invalid_user_id INVALID_USER_ID, user_required USER_REQUIRED (user_id 0 or blank on cart,
    wishlist or purchase), missing_event_type MISSING_EVENT_TYPE, invalid_event_type
    INVALID_EVENT_TYPE, missing_product_id MISSING_PRODUCT_ID (on views), invalid_product_id
    INVALID_PRODUCT_ID, unknown_product UNKNOWN_PRODUCT, unknown_category UNKNOWN_CATEGORY*,
    category_product_mismatch CATEGORY_PRODUCT_MISMATCH*, missing_price MISSING_PRICE,
    invalid_price INVALID_PRICE, negative_price NEGATIVE_PRICE (add_to_cart), extreme_price
    EXTREME_PRICE (above the contract's max_price), zero_purchase_price
    NON_POSITIVE_PURCHASE_PRICE, unexpected_price UNEXPECTED_PRICE, invalid_quantity
    INVALID_QUANTITY*, unexpected_quantity UNEXPECTED_QUANTITY*, missing_event_time
    MISSING_EVENT_TIME, invalid_event_time INVALID_EVENT_TIME, future_event_time
    FUTURE_EVENT_TIME (1-6 h beyond the contract's tolerance_s), invalid_user_segment
    INVALID_USER_SEGMENT*, malformed_row MALFORMED_ROW (one of the version's fields left out);
    and replayed (no code): an exact copy of a row of an earlier file of
    the same run, a duplicate the pipeline skips. (* v2/v3 only.)
Late events (``--late-rate``, default 2 %) are valid events whose event_time is 1 min to 3 h
older than the file's time minus ECOM_QUALITY_LATE_WATERMARK_S; on-time events lie within the
last half watermark before the file's time.

Truth files (``--truth-dir DIR``, never in the CSV): ``DIR/<csv name without .csv>.json``,
written before its CSV appears::

    {"file": "events_...csv", "schema_version": "v3",
     "file_time": "2026-01-29T10:30:20.123456+00:00",   # the stamp in the file name
     "rows": 100, "invalid": 2, "replayed": 0, "late": 1, "valid_new": 98,
     "codes": {"EXTREME_PRICE": 1, "USER_REQUIRED": 1},
     "lines": [{"line": 7, "kind": "extreme_price", "codes": ["EXTREME_PRICE"],
                "replayed": false, "late": false}, ...]}

``line`` is the 1-based data line number (the header is not counted: line 1 is the first event).
Only rows that are not valid, new and on time are listed; ``kind`` is an anomaly kind or
"late". valid_new = rows - invalid - replayed (late rows are valid and counted in it).
FUTURE_EVENT_TIME and lateness hold relative to file_time: validate against it, or promptly.

Determinism: ``--seed S`` makes files byte-identical, names included, across runs: the clock is
then simulated, starting at ``--start-time`` (ISO-8601) or 2026-01-01T00:00:00Z, and file k is
stamped start + k x interval (x events_per_file x 0.05 s when the interval is 0), however fast
or slow the run. ``--start-time`` without a seed simulates the clock with random content.
"""
