// The demo storefront: analytics.js tracks clicks to the collector; the list
// comes from the API through this server (/api/recommendations/USER).
"use strict";

const errors = [];
function report(message) {
  errors.push(String(message));
  document.getElementById("errors").textContent = errors.join("\n");
}
window.addEventListener("error", (e) => report(e.message));
window.addEventListener("unhandledrejection", (e) => report(e.reason));

const query = new URLSearchParams(location.search);
const text = (id, value) => { document.getElementById(id).textContent = value; };
let analytics = null;
let user = null;
let shown = [];

function hue(item) {
  let h = 0;
  for (const c of item) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

async function recommendations() {
  const answer = await fetch(`/api/recommendations/${encodeURIComponent(user)}`);
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.message || answer.status);
  return body;
}

// The API's items are {item_id, score}; the page deals in ids.
const ids = (body) => body.items.map((i) => i.item_id);

function tiles(items, before = []) {
  return items.map((item) => {
    const tile = document.createElement("div");
    tile.className = "product" + (before.length && !before.includes(item) ? " new" : "");
    tile.dataset.item = item;
    const img = document.createElement("div");
    img.className = "img";
    img.style.background = `hsl(${hue(item)} 55% 70%)`;
    const name = document.createElement("div");
    name.textContent = item;
    tile.append(img, name);
    tile.addEventListener("click", () => view(item).catch(report));
    return tile;
  });
}

function render(body, before = []) {
  text("strategy", `${body.strategy} · model ${body.model_version} · ${body.fresh_items} fresh items`);
  document.getElementById("recommendations").replaceChildren(...tiles(ids(body), before));
  shown = ids(body);
}

async function view(item) {
  const before = shown.slice();
  text("changed", "");
  text("status", `sent Product Viewed ${item}…`);
  await analytics.track("Product Viewed", { product_id: item, name: item });
  // Acknowledged by the collector: the server waits (in real time) for the list to change.
  const url = `/api/recommendations/${encodeURIComponent(user)}?wait_ms=10000`
    + `&changed_from=${encodeURIComponent(before.join(","))}`;
  const answer = await fetch(url);
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.message || answer.status);
  if (ids(body).join() === before.join()) {
    text("status", "the list did not change within 10 s");
    return;
  }
  render(body, before);
  const ms = Math.round(body.waited_ms);
  text("changed", `Your list changed ${ms} ms after the collector took the click.`);
  document.body.dataset.changedMs = String(ms);
  text("status", "");
}

async function pick(id) {
  user = id;
  await analytics.identify(user);
  render(await recommendations());
  text("status", "click a product");
}

(async () => {
  const shop = await (await fetch("/api/shop")).json();
  text("collector", shop.collector);
  const segmentio = { apiKey: "demo-shop", apiHost: `${shop.collector}/v1`, protocol: "http" };
  [analytics] = await AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: "demo-shop", cdnSettings: { integrations: { "Segment.io": segmentio } } },
    { integrations: { "Segment.io": segmentio } },
  );
  const users = shop.users.length ? shop.users : ["demo-user"];
  const wanted = query.get("user") || users[0];
  const select = document.getElementById("user");
  select.replaceChildren(...[...new Set([wanted, ...users])].map((u) => new Option(u, u)));
  select.value = wanted;
  select.addEventListener("change", () => pick(select.value).catch(report));
  document.getElementById("aisle").replaceChildren(...tiles(shop.items));
  if (/headless|bot\b|crawl|spider/i.test(navigator.userAgent)) {
    report(`This browser says it is a bot (${navigator.userAgent}): the chain keeps its events out of user state.`);
  }
  await pick(wanted);
  const fresh = shop.items.find((item) => !shown.includes(item));
  if (query.get("autoclick") === "1" && fresh) await view(fresh);
})().catch(report);
