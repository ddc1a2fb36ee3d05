// Live updates for pages that show something in motion (a rollout, a pipeline run): the region marked
// data-live-seconds is fetched again and replaced, unless the reader is typing in it or the tab is hidden.
// Without JavaScript the page still works; it is just not refreshed.
(function () {
  "use strict";
  var region = document.getElementById("live");
  if (!region || !region.dataset.liveSeconds) return;
  var seconds = Math.max(2, parseInt(region.dataset.liveSeconds, 10) || 5);
  function busy() {
    var active = document.activeElement;
    return region.contains(active) && (active.tagName === "INPUT" || active.tagName === "SELECT");
  }
  function refresh() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        if (fresh) region.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
