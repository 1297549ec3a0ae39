"""The secret formats redacted in command output: one row per format, the only list there is.

Each row is a kind (what the marker says: `[REDACTED: kind]`), a pattern in RE2 syntax
(matched on bytes read as Latin-1: no look-around, and every pattern is one of a set run
in one pass, agent/output/redact.py) and where the format is documented. A pattern with a
group named `s` redacts only that group (the password of `user:password@`, the value
after `password=`), so the context stays readable; otherwise the whole match goes.
No pattern matches a line end: a secret never spans lines (private key blocks, which
do, are followed by the redactor itself, from BEGIN to END).

Why this list and not a library's: Yelp's detect-secrets (used until now) last released
in 2024-05 and knows none of Tailscale's keys, Anthropic's, OpenAI's project keys,
GitHub's fine-grained tokens, Google API keys, `password:` lines or bearer headers; its
Stripe pattern stops after 24 characters of today's 99. gitleaks' rule set (MIT, the
reference list most scanners follow) is current for vendor tokens but is written for
source trees: many rules need its entropy scoring, path filters and allow-lists to
stay quiet, and it has no Tailscale rule either. So the vendor-prefixed formats below
follow the vendors' own documentation, checked against gitleaks' rules of the same
name (named in `source`); the context formats (`password=`, `Authorization:`, URLs
with credentials, an AWS secret beside its key id) are ours, tuned on ordinary
command output (tests/unit/agent/output/test_redact_corpus.py keeps both sides honest:
every format in six positions comes back redacted, and df, ps, journal lines, hashes,
UUIDs and container ids come back unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

PRIVATE_KEY = "Private Key"
PASSWORD = "Password"  # noqa: S105 - the name of a kind, not a password
TOKEN = "Token"  # noqa: S105


@dataclass(frozen=True)
class SecretFormat:
    kind: str
    pattern: str
    source: str
    # For `password=`-style formats: values that are not secrets (`true`, `${VAR}`, ...)
    # are left alone.
    placeholders: bool = False


# Values of a `key = value` pair: quoted (anything up to the closing quote on the line),
# or bare (up to white space or a quote; `;`, `,` and `&` stay in, a cut password would
# otherwise show its rest).
_VALUE = r"""(?P<s>"[^"\r\n]+"|'[^'\r\n]+'|["']?[^\s"']+)"""
_LONG_VALUE = r"""(?P<s>"[^"\r\n]{8,}"|'[^'\r\n]{8,}'|["']?[^\s"']{8,})"""
_ASSIGN = r"""["'\]]?[ \t]*(?::=|=>|[:=])[ \t]*"""

FORMATS: tuple[SecretFormat, ...] = (
    # -- cloud providers ---------------------------------------------------------------------
    SecretFormat("AWS Access Key",
                 # The key id, and the secret key when it stands right after it (a CSV line
                 # from the console, `export` lines on one line).
                 r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b"
                 r"""(?:[ \t,;:|="']{1,8}[A-Za-z0-9/+]{40})?""",
                 "AWS IAM docs (access key ids); gitleaks aws-access-token"),
    SecretFormat("Azure Storage Account access key",
                 r"(?i)AccountKey=(?P<s>[A-Za-z0-9+/=]{20,})",
                 "Azure storage connection strings; detect-secrets AzureStorageKeyDetector"),
    SecretFormat("Azure SAS signature", r"[?&]sig=(?P<s>[A-Za-z0-9%+/=]{20,})",
                 "Azure shared access signatures"),
    SecretFormat("Google API Key", r"\bAIza[0-9A-Za-z_-]{35}",
                 "Google Cloud API keys; gitleaks gcp-api-key"),
    SecretFormat("Google OAuth Secret", r"\bGOCSPX-[A-Za-z0-9_-]{28}",
                 "Google OAuth client secrets"),
    SecretFormat("Google OAuth Token", r"\bya29\.[0-9A-Za-z_-]{20,}",
                 "Google OAuth access tokens"),
    SecretFormat("DigitalOcean Token", r"\bdo[opr]_v1_[a-f0-9]{64}",
                 "DigitalOcean tokens; gitleaks digitalocean-*"),
    SecretFormat("Cloudflare Origin CA Key", r"\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}",
                 "gitleaks cloudflare-origin-ca-key"),
    SecretFormat("Databricks Token", r"\bdapi[a-f0-9]{32}(?:-[0-9])?\b",
                 "gitleaks databricks-api-token"),
    SecretFormat("Fly.io Token", r"\b(?:fo1_[A-Za-z0-9_-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{100,})",
                 "gitleaks flyio-access-token"),
    SecretFormat("HashiCorp Vault Token", r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}",
                 "Vault token prefixes; gitleaks vault-*-token"),
    SecretFormat("Terraform Cloud Token", r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}",
                 "gitleaks hashicorp-tf-api-token"),
    SecretFormat("Heroku API Key", r"\bHRKU-AA[0-9A-Za-z_-]{58}", "gitleaks heroku-api-key-v2"),
    # -- our own ecosystem ---------------------------------------------------------------------
    SecretFormat("Tailscale Key",
                 # tskey-auth-, tskey-api-, tskey-client- (OAuth client secrets), tskey-scim-,
                 # tskey-webhook-, and the older tskey-<hex>.
                 r"\btskey-[A-Za-z0-9_-]{8,}",
                 "Tailscale key prefixes (tailscale.com/kb/1085/auth-keys, "
                 "/kb/1215/oauth-clients)"),
    # -- code hosting and packages ---------------------------------------------------------------
    SecretFormat("GitHub Token", r"\bgh[pousr]_[A-Za-z0-9]{36,}",
                 "GitHub token formats; gitleaks github-pat, -oauth, -app-token, -refresh-token"),
    SecretFormat("GitHub Token", r"\bgithub_pat_[A-Za-z0-9_]{22,}",
                 "GitHub fine-grained tokens; gitleaks github-fine-grained-pat"),
    SecretFormat("GitLab Token",
                 r"\b(?:gl(?:pat|dt|rt|ptt|cbt|ft|imt|agent|soat|ffct|oas)-[A-Za-z0-9_.-]{20,}"
                 r"|GR1348941[A-Za-z0-9_-]{20,})",
                 "GitLab token prefixes (docs.gitlab.com/security/tokens); gitleaks gitlab-*"),
    SecretFormat("NPM tokens", r"\bnpm_[A-Za-z0-9]{36}", "gitleaks npm-access-token"),
    SecretFormat("PyPI Token", r"\bpypi-AgE[A-Za-z0-9_-]{50,}", "gitleaks pypi-upload-token"),
    SecretFormat("Atlassian API Token", r"\bATATT3[A-Za-z0-9_=-]{100,}",
                 "gitleaks atlassian-api-token"),
    SecretFormat("Artifactory API Key", r"\bAKCp[A-Za-z0-9]{69}\b",
                 "gitleaks artifactory-api-key"),
    SecretFormat("Postman API Key", r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b",
                 "gitleaks postman-api-token"),
    SecretFormat("Pulumi Token", r"\bpul-[a-f0-9]{40}\b", "gitleaks pulumi-api-token"),
    SecretFormat("Doppler Token", r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}",
                 "gitleaks doppler-api-token"),
    SecretFormat("Linear API Key", r"\blin_api_[A-Za-z0-9]{40}", "gitleaks linear-api-key"),
    # -- AI providers ----------------------------------------------------------------------------
    SecretFormat("Anthropic API Key", r"\bsk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{20,}",
                 "Anthropic key prefixes (sk-ant-api03-, -admin01-, -oat01-); "
                 "gitleaks anthropic-*"),
    SecretFormat("OpenAI Token",
                 r"\bsk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}"
                 r"|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
                 "OpenAI key formats; gitleaks openai-api-key"),
    SecretFormat("Hugging Face Token", r"\bhf_[A-Za-z]{34,}", "gitleaks huggingface-access-token"),
    # -- messaging, payments, monitoring -------------------------------------------------------
    SecretFormat("Slack Token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}|\bxapp-[0-9]-[A-Za-z0-9-]{10,}",
                 "Slack token prefixes; gitleaks slack-*-token"),
    SecretFormat("Slack Webhook",
                 r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s>[A-Za-z0-9_/+-]{20,})",
                 "gitleaks slack-webhook-url"),
    SecretFormat("Discord Bot Token",
                 r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\b",
                 "detect-secrets DiscordBotTokenDetector"),
    SecretFormat("Discord Webhook",
                 r"discord(?:app)?\.com/api/webhooks/[0-9]+/(?P<s>[A-Za-z0-9_-]{60,})",
                 "Discord webhook URLs"),
    SecretFormat("Telegram Bot Token", r"\b[0-9]{8,10}:AA[A-Za-z0-9_-]{33}",
                 "Telegram Bot API; detect-secrets TelegramBotTokenDetector"),
    SecretFormat("Stripe Access Key", r"\b[rs]k_(?:live|test|prod)_[A-Za-z0-9]{10,}",
                 "Stripe API keys (today 99 characters); gitleaks stripe-access-token"),
    SecretFormat("Stripe Webhook Secret", r"\bwhsec_[A-Za-z0-9+/=]{20,}",
                 "Stripe webhook signing secrets"),
    SecretFormat("Square OAuth Secret",
                 r"\bsq0(?:atp|csp|idp)-[0-9A-Za-z_-]{22,}|\bEAAA[A-Za-z0-9_-]{60}",
                 "gitleaks square-access-token"),
    SecretFormat("Shopify Token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
                 "gitleaks shopify-*"),
    SecretFormat("SendGrid API Key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
                 "gitleaks sendgrid-api-token"),
    SecretFormat("Twilio API Key", r"\bSK[0-9a-fA-F]{32}\b", "gitleaks twilio-api-key"),
    SecretFormat("Mailchimp Access Key", r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
                 "detect-secrets MailchimpDetector"),
    SecretFormat("Grafana Token",
                 r"\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b|\bglc_[A-Za-z0-9+/]{32,}",
                 "gitleaks grafana-*"),
    SecretFormat("Sentry Token", r"\bsntry[su]_[A-Za-z0-9+/=_]{40,}", "gitleaks sentry-*-token"),
    SecretFormat("Dynatrace Token", r"\bdt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}",
                 "gitleaks dynatrace-api-token"),
    SecretFormat("New Relic Key", r"\bNR(?:AK|II|JS)-[A-Za-z0-9]{19,32}\b",
                 "gitleaks new-relic-*"),
    SecretFormat("1Password Token", r"\bops_eyJ[A-Za-z0-9+/]{100,}",
                 "gitleaks 1password-service-account-token"),
    SecretFormat("Age Secret Key", r"\bAGE-SECRET-KEY-1[0-9A-Z]{58}", "gitleaks age-secret-key"),
    SecretFormat("JSON Web Token",
                 r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*)?",
                 "RFC 7519 (base64url JSON header, payload, signature); gitleaks jwt"),
    # -- secrets by their context ----------------------------------------------------------------
    SecretFormat("Basic Auth Credentials",
                 r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@"']+:(?P<s>[^\s/?#@"']+)@""",
                 "RFC 3986 userinfo; detect-secrets BasicAuthDetector"),
    SecretFormat("Authorization Header",
                 r"(?i)\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?"
                 r"(?:(?:bearer|basic|token|bot|apikey|sso-key)[ \t]+)?"
                 r"(?P<s>[A-Za-z0-9._~+/=:-]{8,})",
                 "RFC 9110 Authorization, RFC 6750 bearer tokens"),
    SecretFormat("Authorization Header", r"(?i)\bbearer[ \t]+(?P<s>[A-Za-z0-9._~+/=-]{16,})",
                 "RFC 6750 bearer tokens"),
    SecretFormat("Docker Registry Auth", r"(?i)\"auth\"[ \t]*:[ \t]*\"(?P<s>[A-Za-z0-9+/=]{8,})\"",
                 "~/.docker/config.json"),
    SecretFormat(PASSWORD,
                 # password=, PASSWD:, db_password = , "secret": ..., passphrase: (env, INI,
                 # YAML, JSON, command lines); `--password-file=` is not one.
                 r"(?i)(?:password|passwd|passphrase|secret|credentials?)" + _ASSIGN + _VALUE,
                 "env, INI, YAML and JSON conventions; gitleaks generic-api-key",
                 placeholders=True),
    SecretFormat(TOKEN,
                 # GITHUB_TOKEN=, api_key:, aws_secret_access_key = , PrivateKey = (WireGuard):
                 # values of 8 characters or more.
                 r"(?i)(?:token|api[_-]?key|auth[_-]?key|access[_-]?key|secret[_-]?key"
                 r"|private[_-]?key|preshared[_-]?key|client[_-]?secret)" + _ASSIGN + _LONG_VALUE,
                 "env, INI, YAML and JSON conventions; gitleaks generic-api-key",
                 placeholders=True),
)
