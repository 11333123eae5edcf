// kamwatch console: the only script. Pages work without it; it adds "print" and "select all".
document.addEventListener("click", function (event) {
  var target = event.target;
  if (target instanceof HTMLElement && target.hasAttribute("data-print")) {
    window.print();
  }
});
document.addEventListener("change", function (event) {
  var target = event.target;
  if (target instanceof HTMLInputElement && target.hasAttribute("data-select-all")) {
    var form = target.form;
    if (!form) return;
    form.querySelectorAll('input[name="alert_id"]').forEach(function (box) {
      box.checked = target.checked;
    });
  }
});
