"""The server's rules (contract §2, §7) and the portal's stricter form rules."""

import pytest
from django.core.exceptions import ValidationError

from apps.iredadmin import validators


class TestServerRules:
    @pytest.mark.parametrize(
        ("path_value", "matches"),
        [
            ("example.com", True),
            ("mail.example.co.uk", True),
            ("xn--bcher-kva.example", True),
            ("example.COM", False),  # routes are case-sensitive: an upper-case TLD is a 404
            ("example", False),
            ("example.c", False),
            ("example." + "a" * 26, False),
        ],
    )
    def test_the_domain_route_pattern(self, path_value, matches):
        assert validators.matches_domain_route(path_value) is matches

    @pytest.mark.parametrize(
        ("path_value", "matches"),
        [
            ("jane@example.com", True),
            ("sales#eu@example.com", True),
            ("a+b@example.com", True),
            ("a/b@example.com", True),  # the route allows '/', only new mailboxes refuse it
            (".jane@example.com", False),
            ("jane@example", False),
            ("jane example@example.com", False),
        ],
    )
    def test_the_mail_route_pattern(self, path_value, matches):
        assert validators.matches_mail_route(path_value) is matches

    @pytest.mark.parametrize(
        ("domain", "accepted"),
        [
            ("example.com", True),
            ("EXAMPLE.COM", True),  # is_domain lower-cases first
            ("a..b.com", True),  # the server's pattern allows it; the portal does not
            ("exa$mple.com", False),
            ("exa mple.com", False),
            ("example", False),
            ("bücher.example", False),  # Pro 5.5 patterns are ASCII-only
        ],
    )
    def test_is_domain(self, domain, accepted):
        assert validators.server_accepts_domain(domain) is accepted

    @pytest.mark.parametrize(
        ("address", "new_mailbox", "any_email"),
        [
            ("jane@example.com", True, True),
            ("jane.doe-1@example.com", True, True),
            ("a=b@example.com", True, True),
            ("jane+tag@example.com", False, True),
            ("team/a@example.com", False, True),
            ("jäne@example.com", False, False),
        ],
    )
    def test_new_mailboxes_refuse_plus_and_slash(self, address, new_mailbox, any_email):
        assert validators.server_accepts_new_mailbox(address) is new_mailbox
        assert validators.server_accepts_email(address) is any_email

    @pytest.mark.parametrize(
        ("password", "codes"),
        [
            ("Passw0rd!", []),
            ("", ["PW_EMPTY"]),
            ("Pa0!", ["PW_SHORTER_THAN_MIN_LENGTH"]),
            ("password", ["PW_NO_UPPERCASE", "PW_NO_DIGIT_NUMBER", "PW_NO_SPECIAL_CHAR"]),
            ("12345678!", ["PW_NO_LETTER", "PW_NO_UPPERCASE"]),
            ("Pässw0rd!", ["PW_NON_ASCII"]),
            ("Pass w0rd!", []),  # a space is allowed
            ("Passw0rd^^", ["PW_NO_SPECIAL_CHAR"]),  # '^' is only in the docs' list
        ],
    )
    def test_the_password_policy_lists_every_problem_in_order(self, password, codes):
        assert validators.password_policy_violations(password) == codes

    def test_the_password_length_limits_are_configurable(self):
        assert validators.password_policy_violations("Passw0rd!", min_length=12) == [
            "PW_SHORTER_THAN_MIN_LENGTH"
        ]
        assert validators.password_policy_violations("Passw0rd!", max_length=8) == [
            "PW_GREATER_THAN_MAX_LENGTH"
        ]


class TestNormalisation:
    def test_it_lower_cases_and_encodes_international_domains(self):
        assert validators.normalize_domain(" Bücher.Example. ") == "xn--bcher-kva.example"

    def test_it_normalises_only_the_domain_part_of_an_address_to_idna(self):
        assert validators.normalize_address("Jane@Bücher.Example") == "jane@xn--bcher-kva.example"

    @pytest.mark.parametrize("value", ["", "   ", "a" * 64 + "é.com"])
    def test_it_refuses_names_that_cannot_be_encoded(self, value):
        with pytest.raises(ValueError, match=r"."):
            validators.normalize_domain(value)


class TestFormRules:
    @pytest.mark.parametrize(
        ("typed", "stored"),
        [
            ("Example.COM", "example.com"),
            ("mail.example.co.uk", "mail.example.co.uk"),
            ("bücher.example", "xn--bcher-kva.example"),
        ],
    )
    def test_it_accepts_and_normalises_domains(self, typed, stored):
        assert validators.validate_domain_name(typed) == stored

    @pytest.mark.parametrize(
        "typed",
        [
            "example",
            "a..b.com",
            "-example.com",
            "example-.com",
            "exa_mple.com",
            "example.123",
            "a" * 64 + ".com",
            ("a" * 60 + ".") * 5 + "com",
            "example.com/evil",
            "../example.com",
            "example.com\r\nHost: evil.com",
        ],
    )
    def test_it_refuses_domains_with_a_sentence(self, typed):
        with pytest.raises(ValidationError) as error:
            validators.validate_domain_name(typed)
        assert error.value.code == "INVALID_DOMAIN_NAME"
        assert "example.com" in error.value.messages[0]

    def test_it_accepts_and_normalises_new_mailbox_addresses(self):
        assert validators.validate_new_mailbox_address(" Jane.Doe@Example.COM ") == (
            "jane.doe@example.com"
        )

    @pytest.mark.parametrize(
        ("typed", "fragment"),
        [
            ("jane", "full address"),
            ("@example.com", "full address"),
            ("jane+tag@example.com", "'+' or '/'"),
            ("a/../b@example.com", "'+' or '/'"),
            (".jane@example.com", "before @"),
            ("jane.@example.com", "before @"),
            ("ja..ne@example.com", "before @"),
            ("=jane@example.com", "before @"),
            ("jäne@example.com", "before @"),
            ("a" * 65 + "@example.com", "before @"),
            ("jane@example", "domain"),
        ],
    )
    def test_it_refuses_new_mailbox_addresses_with_a_sentence(self, typed, fragment):
        with pytest.raises(ValidationError) as error:
            validators.validate_new_mailbox_address(typed)
        assert fragment in " ".join(error.value.messages)

    def test_every_address_the_form_accepts_the_server_accepts(self):
        samples = ["jane@example.com", "a-b_c#d&e=f@sub.example.org", "x@xn--bcher-kva.example"]
        for sample in samples:
            address = validators.validate_new_mailbox_address(sample)
            assert validators.server_accepts_new_mailbox(address)
            assert validators.matches_mail_route(address)

    def test_it_lists_every_password_problem_as_a_sentence(self):
        with pytest.raises(ValidationError) as error:
            validators.validate_mailbox_password("password")
        assert [e.code for e in error.value.error_list] == [
            "PW_NO_UPPERCASE",
            "PW_NO_DIGIT_NUMBER",
            "PW_NO_SPECIAL_CHAR",
        ]
        assert "Include a digit." in error.value.messages

    def test_it_accepts_a_password_the_server_accepts(self):
        validators.validate_mailbox_password("Correct-H0rse")

    @pytest.mark.parametrize("value", [0, 1, 1024, validators.MAX_QUOTA_MB])
    def test_it_accepts_quotas_in_range(self, value):
        assert validators.validate_quota_mb(value) == value

    @pytest.mark.parametrize("value", [-1, validators.MAX_QUOTA_MB + 1, True, "10", 1.5])
    def test_it_refuses_quotas_out_of_range(self, value):
        with pytest.raises(ValidationError):
            validators.validate_quota_mb(value)

    @pytest.mark.parametrize("value", [-1, 0, 500])
    def test_it_accepts_account_limits(self, value):
        assert validators.validate_account_limit(value) == value

    @pytest.mark.parametrize("value", [-2, validators.MAX_ACCOUNT_LIMIT + 1, False])
    def test_it_refuses_account_limits_out_of_range(self, value):
        with pytest.raises(ValidationError):
            validators.validate_account_limit(value)

    def test_it_accepts_only_shipped_languages(self):
        assert validators.validate_language("de_DE") == "de_DE"
        with pytest.raises(ValidationError):
            validators.validate_language("xx_XX")


@pytest.mark.parametrize("length", [8, 16, 40])
def test_generated_passwords_satisfy_the_policy(length):
    passwords = {validators.generate_password(length) for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) == length
        assert validators.password_policy_violations(password) == []


def test_generated_passwords_are_at_least_8_characters():
    with pytest.raises(ValueError, match="at least 8"):
        validators.generate_password(7)
