// The overview: every partition, the unassigned detectors, the ECS log (live.js).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const live = new LIVE.Live({
    partition: null,
    container: document.getElementById("partitions"),
    unassigned: document.getElementById("unassigned-box"),
    log: document.getElementById("log"),
    heading: true,
    withAction: false,
  });
  window.ECS_LIVE = live;  // for the browser tests
  live.start();
});
