// The search page: choose or drop an image, POST it to /search, show the query and its top-k grid.
"use strict";

const $ = (id) => document.getElementById(id);
let lastFile = null;

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function showQuery(file) {
  $("query-preview").src = URL.createObjectURL(file);
  $("query-caption").textContent = file.name || "query";
  $("query").hidden = false;
}

function card(result) {
  const div = document.createElement("div");
  div.className = "card" + (result.match ? " match" : "");
  div.dataset.id = result.id;
  div.title = "search with this image";
  const img = document.createElement("img");
  img.src = result.image_url;
  img.alt = "item " + result.id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = result.label ?? "";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = result.score.toFixed(3);
  meta.append(label, score);
  div.append(img, meta);
  if (result.match) {
    const badge = document.createElement("div");
    badge.className = "badge";
    badge.textContent = "same label";
    div.append(badge);
  }
  div.addEventListener("click", () => searchItem(result));
  return div;
}

async function search(file) {
  lastFile = file;
  showQuery(file);
  const form = new FormData();
  form.append("image", file, file.name || "query");
  const params = new URLSearchParams({ k: $("k").value || "10" });
  const label = $("label").value.trim();
  if (label) params.set("label", label);
  setStatus("searching ...", false);
  try {
    const response = await fetch("/search?" + params, { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) {
      setStatus(body.error || "error " + response.status, true);
      $("results").replaceChildren();
      return;
    }
    $("results").replaceChildren(...body.results.map(card));
    const matches = body.results.filter((r) => r.match).length;
    setStatus(body.results.length + " results" + (label ? ", " + matches + " with label " + label : ""), false);
  } catch (error) {
    setStatus("request failed: " + error, true);
  }
}

async function searchItem(result) {
  const blob = await (await fetch(result.image_url)).blob();
  $("label").value = result.label ?? "";
  search(new File([blob], "item-" + result.id, { type: blob.type }));
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) search(e.target.files[0]); });
$("k").addEventListener("change", () => { if (lastFile) search(lastFile); });
$("label").addEventListener("change", () => { if (lastFile) search(lastFile); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length) search(e.dataTransfer.files[0]);
});
fetch("/healthz").then((r) => r.json()).then((h) => { $("health").textContent = h.items + " items, " + h.kind; });
