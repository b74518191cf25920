// Demo analytics tag: behaves like a typical analytics snippet (first-party _ga cookies).
(function () {
  var id = "GA1.1." + Math.floor(Math.random() * 1e9) + "." + Math.floor(Date.now() / 1000);
  document.cookie = "_ga=" + id + "; max-age=" + 63072000 + "; path=/; SameSite=Lax";
  document.cookie = "_ga_DEMO123=GS1.1." + Math.floor(Date.now() / 1000) + "; max-age=63072000; path=/; SameSite=Lax";
  document.cookie = "_gid=GA1.1." + Math.floor(Math.random() * 1e9) + "; max-age=86400; path=/; SameSite=Lax";
  window.dataLayer = window.dataLayer || [];
  window.dataLayer.push({ event: "demo_analytics_loaded" });
  (window.__trothDemo = window.__trothDemo || {}).analytics = true;
})();
