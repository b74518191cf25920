// Demo advertising tag: sets the conversion-linker cookie an ads tag would set.
(function () {
  document.cookie = "_gcl_au=1.1." + Math.floor(Math.random() * 1e9) + "." + Math.floor(Date.now() / 1000) + "; max-age=7776000; path=/; SameSite=Lax";
  window.dataLayer = window.dataLayer || [];
  window.dataLayer.push({ event: "demo_ads_loaded" });
  (window.__trothDemo = window.__trothDemo || {}).advertising = true;
})();
