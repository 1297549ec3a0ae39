# ruff: noqa: E501 - real command output has long lines
"""Secrets in the shapes commands print them (one per format, made here, valid for nothing)
and ordinary output that holds none: the two sides of redaction's test corpus."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
from dataclasses import dataclass

from tests.support.secrets_planted import key_body, private_key

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
WINDOW = 8  # characters of a secret that may never show, anywhere


def _chars(alphabet: str, count: int, seed: str) -> str:
    rng = random.Random(hashlib.sha256(seed.encode()).digest())
    return "".join(rng.choice(alphabet) for _ in range(count))


@dataclass(frozen=True)
class Planted:
    name: str
    text: str  # as the output shows it (a key block spans lines)
    secrets: tuple[str, ...]  # none of these may show, nor WINDOW characters of one

    @property
    def first_secret(self) -> str:
        return self.secrets[0]


def _plain(name: str, text: str, secret: str | None = None) -> Planted:
    return Planted(name, text, (secret if secret is not None else text,))


def _jwt() -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return (part({"alg": "RS256", "typ": "JWT", "kid": _chars(HEX, 16, "kid")}) + "."
            + part({"sub": "system:serviceaccount:kube-system:deployer",
                    "iss": "https://kubernetes.default.svc", "exp": 1893456000})
            + "." + _chars(URLSAFE, 86, "jwt-sig"))


def _pem(kind: str, seed: str) -> tuple[str, list[str]]:
    body = [_chars(B64, 64, f"{seed}{n}") for n in range(8)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(body) + f"\n-----END {kind}-----"), body


def corpus() -> list[Planted]:
    aws_id = "AKIA" + _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, "aws-id")
    aws_id2 = "AKIA" + _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16, "aws-id2")
    aws_secret = _chars(ALNUM + "/+", 40, "aws-secret")
    aws_secret2 = _chars(ALNUM + "/+", 40, "aws-secret2")
    ssh_key = private_key().rstrip("\n")
    rsa, rsa_body = _pem("RSA PRIVATE KEY", "rsa")
    pkcs8_body = [_chars(B64, 64, f"pkcs8{n}") for n in range(6)]
    json_key = ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n'
                + "\\n".join(pkcs8_body) + '\\n-----END PRIVATE KEY-----\\n", "client_id": "1"}')
    openai_proj = ("sk-proj-" + _chars(URLSAFE, 74, "oa1") + "T3BlbkFJ"
                   + _chars(URLSAFE, 74, "oa2"))
    slack_hook = f"T0{_chars(HEX.upper(), 8, 's1')}/B0{_chars(HEX.upper(), 8, 's2')}/" \
                 + _chars(ALNUM, 24, "s3")
    basic = base64.b64encode(b"deploy:fancy-password-" + _chars(ALNUM, 12, "ba").encode()).decode()
    docker = base64.b64encode(b"robot:" + _chars(ALNUM, 20, "dk").encode()).decode()
    azure = _chars(B64, 86, "az") + "=="
    wg = _chars(B64, 43, "wg") + "="
    password = "Tr0ub4dor-" + _chars(ALNUM, 10, "pw")
    return [
        Planted("openssh private key", ssh_key, tuple(key_body(ssh_key))),
        Planted("RSA private key", rsa, tuple(rsa_body)),
        Planted("private key in JSON", json_key, tuple(pkcs8_body)),
        _plain("AWS access key id", aws_id),
        Planted("AWS key id and secret (CSV)", f"{aws_id2},{aws_secret}", (aws_id2, aws_secret)),
        _plain("AWS credentials file", f"aws_secret_access_key = {aws_secret2}", aws_secret2),
        _plain("GitHub classic token", "ghp_" + _chars(ALNUM, 36, "ghp")),
        _plain("GitHub fine-grained token",
               "github_pat_" + _chars(ALNUM, 22, "gpat1") + "_" + _chars(ALNUM, 59, "gpat2")),
        _plain("GitLab token", "glpat-" + _chars(URLSAFE, 20, "glpat")),
        _plain("Slack bot token", "xoxb-1234567890-1234567890123-" + _chars(ALNUM, 24, "xoxb")),
        _plain("Slack webhook", "https://hooks.slack.com/services/" + slack_hook, slack_hook),
        _plain("Stripe live key (99 characters)", "sk_live_" + _chars(ALNUM, 91, "stripe")),
        _plain("Stripe restricted key", "rk_test_" + _chars(ALNUM, 24, "rk")),
        _plain("OpenAI project key", openai_proj),
        _plain("OpenAI legacy key",
               "sk-" + _chars(ALNUM, 20, "ol1") + "T3BlbkFJ" + _chars(ALNUM, 20, "ol2")),
        _plain("Anthropic API key", "sk-ant-api03-" + _chars(URLSAFE, 93, "ant") + "AA"),
        _plain("Google API key", "AIza" + _chars(URLSAFE, 35, "aiza")),
        _plain("Tailscale auth key",
               "tskey-auth-k" + _chars(ALNUM, 10, "ts1") + "CNTRL-" + _chars(ALNUM, 33, "ts2")),
        _plain("Tailscale API key",
               "tskey-api-k" + _chars(ALNUM, 10, "ts3") + "CNTRL-" + _chars(ALNUM, 33, "ts4")),
        _plain("Tailscale OAuth client secret",
               "tskey-client-k" + _chars(ALNUM, 10, "ts5") + "CNTRL-" + _chars(ALNUM, 33, "t6")),
        _plain("JSON Web Token", _jwt()),
        _plain("npm token", "npm_" + _chars(ALNUM, 36, "npm")),
        _plain("PyPI token", "pypi-AgEIcHlwaS5vcmc" + _chars(URLSAFE, 160, "pypi")),
        _plain("SendGrid key",
               "SG." + _chars(URLSAFE, 22, "sg1") + "." + _chars(URLSAFE, 43, "sg2")),
        _plain("Twilio API key", "SK" + _chars(HEX, 32, "twilio")),
        _plain("Hugging Face token", "hf_" + _chars(string.ascii_letters, 34, "hf")),
        _plain("HashiCorp Vault token", "hvs." + _chars(URLSAFE, 91, "vault")),
        _plain("DigitalOcean token", "dop_v1_" + _chars(HEX, 64, "do")),
        _plain("Telegram bot token", "123456789:AA" + _chars(URLSAFE, 33, "tg")),
        _plain("URL with a password", f"postgres://app:{password}@db.internal:5432/app",
               password),
        _plain("env password", "DB_PASSWORD=correct-horse-" + _chars(ALNUM, 10, "env"),
               "correct-horse-" + _chars(ALNUM, 10, "env")),
        _plain("YAML passwd", "  passwd: Sup3r-" + _chars(ALNUM, 12, "yaml"),
               "Sup3r-" + _chars(ALNUM, 12, "yaml")),
        _plain("YAML secret", "secret: kX9-" + _chars(ALNUM, 14, "ysec"),
               "kX9-" + _chars(ALNUM, 14, "ysec")),
        _plain("INI password", "password = Winter!" + _chars(ALNUM, 10, "ini"),
               "Winter!" + _chars(ALNUM, 10, "ini")),
        _plain("env token", "API_TOKEN=" + _chars(HEX, 32, "envtok"), _chars(HEX, 32, "envtok")),
        _plain("bearer header", "Authorization: Bearer " + _chars(URLSAFE, 40, "bearer"),
               _chars(URLSAFE, 40, "bearer")),
        _plain("basic auth header", "Authorization: Basic " + basic, basic),
        _plain("Docker registry auth", f'"auth": "{docker}"', docker),
        _plain("Azure storage connection string",
               f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={azure};"
               "EndpointSuffix=core.windows.net", azure),
        _plain("WireGuard private key", f"PrivateKey = {wg}", wg),
    ]


def leaks(planted: Planted, shown: str) -> list[str]:
    """The pieces of `planted`'s secrets that `shown` gives away (WINDOW characters each)."""
    found = []
    for secret in planted.secrets:
        size = min(WINDOW, len(secret))
        for at in range(len(secret) - size + 1):
            if secret[at:at + size] in shown:
                found.append(secret[at:at + size])
                break
    return found


# Ordinary command output: none of it is a secret, all of it must come back unchanged.
ORDINARY = {
    "df": """\
Filesystem      Size  Used Avail Use% Mounted on
udev            3.9G     0  3.9G   0% /dev
tmpfs           793M  1.6M  791M   1% /run
/dev/nvme0n1p2  468G  201G  244G  46% /
/dev/nvme0n1p1  511M  6.1M  505M   2% /boot/efi
overlay          98G   41G   53G  44% /var/lib/docker/overlay2/4f1c2a7d9e0b3c5a8f6e1d2b4c7a9e0f3b5d8c1a2e4f6b8d0c2e4a6b8d0f2a4c/merged
""",
    "ps": """\
USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
root           1  0.0  0.1 167812 12936 ?        Ss   Jul21   0:09 /sbin/init splash
root         412  0.0  0.2  48412 17220 ?        S<s  Jul21   0:02 /lib/systemd/systemd-journald
root         811  0.0  0.4 1802504 38920 ?       Ssl  Jul21   1:12 /usr/bin/containerd --config /etc/containerd/config.toml
root         902  0.1  1.0 2391080 82344 ?       Ssl  Jul21   4:45 /usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
root        1203  0.0  0.1  15432  9120 ?        Ss   Jul21   0:00 sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups
root        1410  0.3  0.6 1291044 52116 ?       Ssl  Jul21  12:03 /usr/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=41641
kube        2211  1.2  3.1 1844120 254112 ?      Ssl  Jul21  40:11 kube-apiserver --service-account-key-file=/etc/kubernetes/pki/sa.pub --tls-private-key-file=/etc/kubernetes/pki/apiserver.key --token-auth-file=/etc/kubernetes/tokens.csv --kubelet-client-key=/etc/kubernetes/pki/kubelet.key
postgres    3012  0.0  0.3 215004 28312 ?        Ss   Jul21   0:03 postgres: 16/main: checkpointer
www-data    3100  0.0  0.0  55280  5620 ?        S    Jul21   0:00 nginx: worker process
alice       4410  0.0  0.0  10072  3408 pts/0    R+   09:12   0:00 ps auxww
""",
    "systemctl": """\
● ssh.service - OpenBSD Secure Shell server
     Loaded: loaded (/lib/systemd/system/ssh.service; enabled; preset: enabled)
     Active: active (running) since Tue 2026-07-21 08:01:12 UTC; 1 day 2h ago
       Docs: man:sshd(8)
             man:sshd_config(5)
   Main PID: 1203 (sshd)
      Tasks: 1 (limit: 9401)
     Memory: 5.2M
        CPU: 1.204s
     CGroup: /system.slice/ssh.service
             └─1203 "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"

Jul 22 09:10:02 web-1 sshd[4301]: Accepted publickey for alice from 100.64.0.7 port 51234 ssh2: ED25519 SHA256:q3bJ9mCz1kW0xYv5H7dN2sP8tR4uL6eA0fG3hK9jM1o
Jul 22 09:10:02 web-1 sshd[4301]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
""",
    "journal": """\
Jul 22 03:12:44 web-1 sshd[8812]: Failed password for invalid user admin from 203.0.113.9 port 40112 ssh2
Jul 22 03:12:46 web-1 sshd[8812]: Connection closed by invalid user admin 203.0.113.9 port 40112 [preauth]
Jul 22 07:00:01 web-1 CRON[9102]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)
Jul 22 08:15:09 web-1 sudo[9410]: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice
Jul 22 08:15:12 web-1 sudo[9410]:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx
Jul 22 08:15:13 web-1 systemd[1]: Started nginx.service - A high performance web server and a reverse proxy server.
Jul 22 08:20:31 web-1 kernel: [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.4 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=4242 DF PROTO=TCP SPT=51515 DPT=23 WINDOW=29200 RES=0x00 SYN URGP=0
Jul 22 08:21:02 web-1 tailscaled[1410]: control: mapRoutine: netmap received: state:synchronized
Jul 22 08:21:02 web-1 tailscaled[1410]: wgengine: Reconfig: configuring userspace WireGuard config (with 3/12 peers)
Jul 22 08:22:10 web-1 dockerd[902]: time="2026-07-22T08:22:10.112Z" level=info msg="ignoring event" container=9c1f3e2d4b5a67890abcdef1234567890abcdef1234567890abcdef12345678 module=libcontainerd namespace=moby topic=/tasks/delete type="*events.TaskDelete"
Jul 22 08:30:00 web-1 nginx[3100]: 100.64.0.7 - - [22/Jul/2026:08:30:00 +0000] "GET /api/v1/items?page=2&sort=desc HTTP/1.1" 200 5123 "https://app.example.com/items" "Mozilla/5.0 (X11; Linux x86_64)"
""",
    "hashes": """\
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  /etc/empty
9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  /usr/bin/ls
d41d8cd98f00b204e9800998ecf8427e  /etc/hostname
2fd4e1c67a2d28fced849ee1bb76e7391b93eb12  /etc/hosts
a1b2c3d Fix the retry loop when the pool is closed
8f3e9b0 (HEAD -> main, origin/main) Bump dependencies
""",
    "uuids": """\
NAME        FSTYPE FSVER LABEL UUID                                 FSAVAIL FSUSE% MOUNTPOINTS
nvme0n1p1   vfat   FAT32       6A3B-1C2D                             504.9M     1% /boot/efi
nvme0n1p2   ext4   1.0         0f2e4c6a-8b1d-4e3f-9a5c-7d2b1e0f3a4c  243.4G    43% /
/dev/sda1: UUID="3e9c1b7a-2f4d-4c8e-a1b0-5d6e7f8a9b0c" BLOCK_SIZE="4096" TYPE="ext4" PARTUUID="c0ffee00-01"
machine-id 8d3f0c2b9a1e4d5f6a7b8c9d0e1f2a3b
""",
    "containers": """\
CONTAINER ID   IMAGE                     COMMAND                  CREATED        STATUS                  PORTS                    NAMES
9c1f3e2d4b5a   nginx:1.27                "/docker-entrypoint.…"   2 days ago     Up 2 days               0.0.0.0:80->80/tcp       web
4f1c2a7d9e0b   postgres:16               "docker-entrypoint.s…"   2 days ago     Up 2 days (healthy)     5432/tcp                 db
sha256:4f1c2a7d9e0b3c5a8f6e1d2b4c7a9e0f3b5d8c1a2e4f6b8d0c2e4a6b8d0f2a4c
NAME                          READY   STATUS    RESTARTS   AGE
api-7d9f8b6c5d-x2k4p          1/1     Running   0          3d
worker-5c8d7e6f9b-9qz7m       1/1     Running   2          3d
""",
    "ssh": """\
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop
ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg= root@web-1
256 SHA256:q3bJ9mCz1kW0xYv5H7dN2sP8tR4uL6eA0fG3hK9jM1o alice@laptop (ED25519)
passwordauthentication no
permitemptypasswords no
pubkeyauthentication yes
kbdinteractiveauthentication no
authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2
hostkey /etc/ssh/ssh_host_ed25519_key
""",
    "certificate": """\
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQkM1c2VydmVyLWNlcnQtZm9yLXRlc3RzMAoGCCqGSM49
BAMCMBkxFzAVBgNVBAMMDnRhaWxuZXQtYWdlbnQwHhcNMjYwNzIxMDAwMDAwWhcN
-----END CERTIFICATE-----
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=
-----END PUBLIC KEY-----
""",
    "config": """\
passwd:         files systemd
group:          files systemd
shadow:         files systemd
hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname
PWD=/home/alice
OLDPWD=/srv/app
SSH_AUTH_SOCK=/run/user/1000/gnupg/S.gpg-agent.ssh
LS_COLORS=rs=0:di=01;34:ln=01;36:mh=00:pi=40;33:so=01;35
password: ${DB_PASSWORD}
secret: true
token_ttl: 3600
password_file=/run/secrets/db
root:x:0:0:root:/root:/bin/bash
""",
    "apt": """\
Hit:1 http://deb.debian.org/debian trixie InRelease
Get:2 http://security.debian.org/debian-security trixie-security InRelease [43.4 kB]
Get:3 https://pkgs.tailscale.com/stable/debian trixie InRelease
Fetched 6,254 kB in 2s (3,127 kB/s)
Reading package lists... Done
[sudo] password for alice:
Enter passphrase for key '/home/alice/.ssh/id_ed25519':
Your token has expired; run `tailscale login` again.
""",
}
