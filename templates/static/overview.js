// The overview: every partition as a compact card (its headline, counts by
// state, the heat map of its systems; the table folded away below), the
// unassigned detectors and the ECS log (live.js, headline.js).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = new LIVE.Live({
    partition: null,
    container: document.getElementById("partitions"),
    unassigned: document.getElementById("unassigned-box"),
    log: document.getElementById("log"),
    compact: true,
    withAction: false,
  });
  window.ECS_LIVE = live;  // for the browser tests
  live.start();
});
