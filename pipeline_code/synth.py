"""A realistic synthetic store, for demos, tests and benchmarks.

    dataflow generate --events 100000 --out events.jsonl --seed 7

What it models, so the recommender has something real to learn:

- a catalogue of items in categories, with Zipf popularity inside a
  category and a few *related* items per item (accessories, alternatives),
  which sessions tend to browse together;
- users with latent tastes (a Dirichlet mix over a few categories), some
  logged in, some anonymous; sessions arrive with a daily and weekly rhythm;
- funnels: land, list, search, view, add to cart, sometimes remove, check
  out, purchase, with realistic drop-off;
- noise: a few bots hammering product pages, tracker retries that resend an
  event with the same id, and a small share of malformed lines.

The output is seeded: the same arguments always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

CATEGORIES = (
    "shoes",
    "jackets",
    "shirts",
    "trousers",
    "bags",
    "watches",
    "headphones",
    "phones",
    "laptops",
    "kitchen",
    "garden",
    "toys",
    "books",
    "beauty",
)
BRANDS = ("acme", "northwind", "contoso", "globex", "initech", "umbrella", "hooli", "vandelay")
SEARCH_WORDS = ("cheap", "best", "new", "red", "black", "waterproof", "wireless", "kids", "gift", "sale")
DEVICES = ("desktop", "mobile", "mobile", "mobile", "tablet")
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"
MOBILE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
BOT_UAS = ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "python-requests/2.32")
DEFAULT_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class StoreSpec:
    events: int = 100_000
    seed: int = 7
    start: dt.datetime = DEFAULT_START
    days: int = 30
    users: int | None = None  # default: scales with events
    items: int = 600
    bot_share: float = 0.02
    duplicate_share: float = 0.01
    malformed_share: float = 0.005

    def __post_init__(self) -> None:
        if self.events < 1:
            raise ValueError(f"events must be at least 1, got {self.events}")
        if self.days < 1:
            raise ValueError(f"days must be at least 1, got {self.days}")
        if self.items < 10:
            raise ValueError(f"items must be at least 10, got {self.items}")
        if self.start.tzinfo is None:
            raise ValueError(f"start must carry a time zone, got {self.start.isoformat()}")
        for name in ("bot_share", "duplicate_share", "malformed_share"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")


class _Catalogue:
    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.category = rng.integers(0, len(CATEGORIES), n)
        base = np.exp(rng.normal(3.3, 0.8, len(CATEGORIES)))
        self.price = np.round(base[self.category] * np.exp(rng.normal(0, 0.35, n)), 2)
        self.brand = rng.integers(0, len(BRANDS), n)
        self.by_category = [np.flatnonzero(self.category == c) for c in range(len(CATEGORIES))]
        # Zipf-like popularity within each category.
        self.weights = []
        for members in self.by_category:
            w = 1.0 / np.arange(1, len(members) + 1) ** 1.1
            self.weights.append(w / w.sum() if len(members) else w)
        # Related items: mostly the same category, some cross-category.
        self.related = []
        for i in range(n):
            same = self.by_category[self.category[i]]
            k = min(4, len(same) - 1)
            rel = [int(x) for x in rng.choice(same[same != i], k, replace=False)] if k > 0 else []
            rel.append(int(rng.integers(0, n)))
            self.related.append(rel)

    def item(self, i: int) -> dict:
        return {
            "item_id": f"sku-{i:05d}",
            "item_name": f"{BRANDS[self.brand[i]].title()} {CATEGORIES[self.category[i]][:-1]} {i}",
            "item_category": CATEGORIES[self.category[i]],
            "item_brand": BRANDS[self.brand[i]],
            "price": float(self.price[i]),
        }


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Store:
    def __init__(self, spec: StoreSpec) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        self.cat = _Catalogue(self.rng, spec.items)
        n_users = spec.users or max(50, spec.events // 40)
        self.n_users = n_users
        self.taste = self.rng.dirichlet(np.full(len(CATEGORIES), 0.15), n_users)
        self.logged_in = self.rng.random(n_users) < 0.7
        self.device = self.rng.integers(0, len(DEVICES), n_users)
        self.activity = self.rng.pareto(1.5, n_users) + 1
        self.activity /= self.activity.sum()
        self.seq = 0
        self.clock = spec.start.timestamp()
        # About nine events per session and half the draws thinned away.
        self.mean_gap = spec.days * 86400 / (spec.events / 9) * 0.5

    def _uid(self, u: int) -> dict:
        return {"user_id": f"user-{u:06d}"} if self.logged_in[u] else {"anonymous_id": f"anon-{u:06d}"}

    def _event(self, name: str, t: float, u: int, sid: str, ua: str, **fields) -> dict:
        self.seq += 1
        rng = self.rng
        ev = {
            "event_id": f"{self.spec.seed:x}-{self.seq:09d}",
            "event_name": name,
            "event_timestamp": _iso(t),
            **self._uid(u),
            "session_id": sid,
            "context": {
                "page_url": f"https://shop.example/{name.replace('_', '-')}",
                "user_agent": ua,
                "device_category": DEVICES[self.device[u]] if u >= 0 else "other",
                "locale": "en-GB" if rng.random() < 0.3 else "en-US",
            },
            **fields,
        }
        return ev

    def _session_start(self) -> float:
        """The next session on an advancing clock, thinned for a daily and
        weekly rhythm (busy evenings and weekends), so the output arrives
        roughly in time order, as a real log does."""
        rng = self.rng
        while True:
            self.clock += rng.exponential(self.mean_gap)
            hour = (self.clock % 86400) / 3600
            weekday = dt.datetime.fromtimestamp(self.clock, dt.UTC).weekday()
            rate = (0.35 + 0.65 * np.exp(-((((hour - 20 + 12) % 24) - 12) ** 2) / 18)) * (
                1.3 if weekday >= 5 else 1.0
            )
            if rng.random() < rate / 1.3:
                return self.clock

    def session(self) -> list[dict]:
        rng, cat = self.rng, self.cat
        u = int(rng.choice(self.n_users, p=self.activity))
        t = self._session_start()
        sid = f"s-{u:06d}-{int(t)}"
        ua = MOBILE_UA if DEVICES[self.device[u]] == "mobile" else BROWSER_UA
        out = [self._event("page_view", t, u, sid, ua)]
        c = int(rng.choice(len(CATEGORIES), p=self.taste[u]))
        members = cat.by_category[c]
        if len(members) == 0:
            return out
        if rng.random() < 0.3:
            t += rng.exponential(20)
            term = f"{SEARCH_WORDS[rng.integers(len(SEARCH_WORDS))]} {CATEGORIES[c]}"
            out.append(self._event("search", t, u, sid, ua, search_term=term))
        t += rng.exponential(15)
        listed = rng.choice(members, min(8, len(members)), replace=False, p=cat.weights[c])
        out.append(self._event("view_item_list", t, u, sid, ua, items=[cat.item(int(i)) for i in listed]))
        item = int(rng.choice(members, p=cat.weights[c]))
        cart: list[int] = []
        for _ in range(1 + rng.poisson(2.5)):
            t += rng.exponential(40)
            out.append(self._event("view_item", t, u, sid, ua, items=[cat.item(item)]))
            if rng.random() < 0.22:
                t += rng.exponential(20)
                out.append(
                    self._event(
                        "add_to_cart",
                        t,
                        u,
                        sid,
                        ua,
                        items=[{**cat.item(item), "quantity": 1}],
                        currency="USD",
                    )
                )
                cart.append(item)
            # Browse on to a related item, or back to the category's favourites.
            item = (
                int(rng.choice(cat.related[item]))
                if rng.random() < 0.55
                else int(rng.choice(members, p=cat.weights[c]))
            )
        if cart and rng.random() < 0.1:
            t += rng.exponential(10)
            gone = cart.pop()
            out.append(self._event("remove_from_cart", t, u, sid, ua, items=[cat.item(gone)]))
        if cart and rng.random() < 0.6:
            t += rng.exponential(30)
            lines = [{**cat.item(i), "quantity": 1} for i in cart]
            out.append(self._event("begin_checkout", t, u, sid, ua, items=lines, currency="USD"))
            if rng.random() < 0.65:
                t += rng.exponential(60)
                value = round(sum(line["price"] for line in lines), 2)
                out.append(
                    self._event(
                        "purchase",
                        t,
                        u,
                        sid,
                        ua,
                        items=lines,
                        currency="USD",
                        value=value,
                        transaction_id=f"T{self.seq:09d}",
                    )
                )
        return out

    def bot_burst(self) -> list[dict]:
        rng = self.rng
        t = self.clock
        ua = BOT_UAS[rng.integers(len(BOT_UAS))]
        u = -1 - int(rng.integers(0, 20))
        out = []
        for _ in range(int(rng.integers(20, 60))):
            t += rng.exponential(0.5)
            ev = self._event(
                "view_item",
                t,
                u,
                f"bot-{int(t)}",
                ua,
                items=[self.cat.item(int(rng.integers(self.spec.items)))],
            )
            ev.pop("user_id", None)
            ev["anonymous_id"] = f"bot-{-u:03d}"
            out.append(ev)
        return out


def _malformed(rng: np.random.Generator, good: bytes, n: int) -> bytes:
    kind = n % 6
    if kind == 0:
        return good[: max(1, len(good) // 2)]  # truncated
    if kind == 1:
        return good.replace(b'"event_name":"', b'"event_name":"bogus_', 1)
    if kind == 2:
        return good.replace(b'"event_timestamp":"', b'"event_timestamp":"not a time', 1)
    if kind == 3:
        return b"[" + good + b"]"  # an array, not an object
    if kind == 4:
        return good.replace(b'"price":', b'"price":-', 1) if b'"price":' in good else b"null"
    return b"<html>502 Bad Gateway</html>"


def generate(spec: StoreSpec) -> Iterator[bytes]:
    """Yield NDJSON lines (without newlines), roughly in event-time order
    per session, ``spec.events`` of them."""
    store = _Store(spec)
    rng = store.rng
    emitted = 0
    while emitted < spec.events:
        batch = store.bot_burst() if rng.random() < spec.bot_share else store.session()
        for ev in batch:
            if emitted >= spec.events:
                return
            line = orjson.dumps(ev)
            r = rng.random()
            if r < spec.malformed_share:
                line = _malformed(rng, line, emitted)
            yield line
            emitted += 1
            if r > 1 - spec.duplicate_share and emitted < spec.events:
                yield line  # a tracker retry: same event, same id
                emitted += 1


def write(spec: StoreSpec, out, on_progress=None) -> int:
    """Write ``generate(spec)`` to a binary file object; returns lines written."""
    n = 0
    buf: list[bytes] = []
    for line in generate(spec):
        buf.append(line)
        n += 1
        if len(buf) >= 10_000:
            out.write(b"\n".join(buf) + b"\n")
            if on_progress:
                on_progress(len(buf))
            buf = []
    if buf:
        out.write(b"\n".join(buf) + b"\n")
        if on_progress:
            on_progress(len(buf))
    return n
