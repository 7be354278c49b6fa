// Maildesk's own behaviour. Loaded from a file (no inline scripts), so a strict
// Content-Security-Policy can forbid inline code.
"use strict";

(function () {
  const UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ";
  const LOWER = "abcdefghijkmnopqrstuvwxyz";
  const DIGITS = "23456789";
  const SPECIAL = "#$%&*+-=?@_";
  const ALL = UPPER + LOWER + DIGITS + SPECIAL;

  function pick(alphabet) {
    // Rejection sampling keeps every character equally likely.
    const limit = 256 - (256 % alphabet.length);
    const byte = new Uint8Array(1);
    do {
      crypto.getRandomValues(byte);
    } while (byte[0] >= limit);
    return alphabet[byte[0] % alphabet.length];
  }

  // 16 characters with at least one of each class: what iRedAdmin-Pro's policy asks for.
  function generatePassword(length) {
    const chars = [pick(UPPER), pick(LOWER), pick(DIGITS), pick(SPECIAL)];
    while (chars.length < length) chars.push(pick(ALL));
    for (let i = chars.length - 1; i > 0; i--) {
      const j = Math.floor((crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32) * (i + 1));
      [chars[i], chars[j]] = [chars[j], chars[i]];
    }
    return chars.join("");
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-generate-password]");
    if (!button) return;
    event.preventDefault();
    const input = document.getElementById(button.dataset.generatePassword);
    if (!input) return;
    input.value = generatePassword(16);
    // Shown so that the agent can copy it for the mailbox's owner; never shown again later.
    input.type = "text";
    input.select();
  });

  // A choice that only changes the view (the page size) applies at once.
  document.addEventListener("change", function (event) {
    const field = event.target.closest("[data-submit-on-change]");
    if (field && field.form) field.form.requestSubmit();
  });

  document.addEventListener("submit", function (event) {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
