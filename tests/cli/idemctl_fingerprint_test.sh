#!/usr/bin/env bash
# Black-box test of `idemctl fingerprint` (contract section 6).
# Usage: idemctl_fingerprint_test.sh PATH/TO/idemctl
set -euo pipefail

idemctl=${1:?usage: $0 PATH/TO/idemctl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# The last line of a fingerprint run with the body on stdin: `fingerprint: <hex>`.
fingerprint_of() {
  local body=$1
  shift
  printf '%s' "$body" | "$idemctl" fingerprint --method POST --path /payments \
    --content-type application/json "$@" | tail -n 1
}

# 1. Reordered members and 1 vs 1.0 are one request; 1.5 is another.
a=$(fingerprint_of '{"b":1,"a":2}')
b=$(fingerprint_of '{ "a": 2, "b": 1.0 }')
c=$(fingerprint_of '{"a":2,"b":1.5}')
[[ $a =~ ^fingerprint:\ [0-9a-f]{64}$ ]] || fail "last line is not 'fingerprint: <sha-256 hex>': $a"
[[ $a == "$b" ]] || fail "same request, different fingerprints: '$a' vs '$b'"
[[ $a != "$c" ]] || fail "different requests, same fingerprint: $a"

# 2. The body from standard input equals the body from --body-file.
printf '%s' '{"b":1,"a":2}' >"$work/body.json"
d=$("$idemctl" fingerprint --method POST --path /payments --content-type application/json \
  --body-file "$work/body.json" </dev/null | tail -n 1)
[[ $a == "$d" ]] || fail "stdin and --body-file disagree: '$a' vs '$d'"

# 3. The canonical form comes first, one line per part.
out=$(printf '%s' '{"b":1,"a":2}' | "$idemctl" fingerprint --method POST \
  --path '/payments?b=2&a=1' --content-type application/json)
expected='method: POST
path: /payments
query: a=1&b=2
body (json): {"a":2,"b":1}'
[[ $(printf '%s\n' "$out" | head -n 4) == "$expected" ]] || fail "canonical form: $out"

# 4. A bad flag: exit code 2, one line on stderr, nothing on stdout.
set +e
"$idemctl" fingerprint --method POST --path /payments --bogus </dev/null \
  >"$work/out" 2>"$work/err"
status=$?
set -e
[[ $status -eq 2 ]] || fail "bad flag: exit code $status, expected 2"
[[ $(wc -l <"$work/err") -eq 1 ]] || fail "bad flag: stderr is not one line: $(cat "$work/err")"
grep -q -- '--bogus' "$work/err" || fail "bad flag: message does not name it: $(cat "$work/err")"
[[ ! -s $work/out ]] || fail "bad flag: something on stdout"

# 5. --config: fingerprint_ignore, fingerprint_headers and a route's algorithm apply.
cat >"$work/idem.toml" <<'EOF'
ttl = "1d"
fingerprint_headers = ["X-Tenant"]

[[route]]
path = "/payments/*"
methods = ["POST"]
fingerprint_ignore = ["/client_timestamp"]
fingerprint_algorithm = "xxh3-128"
EOF
e=$(printf '%s' '{"amount":5,"client_timestamp":1}' | "$idemctl" fingerprint --method POST \
  --path /payments/p1 --content-type application/json --config "$work/idem.toml" \
  --header 'X-Tenant: acme')
f=$(printf '%s' '{"client_timestamp":2,"amount":5}' | "$idemctl" fingerprint --method POST \
  --path /payments/p1 --content-type application/json --config "$work/idem.toml" \
  --header 'X-Tenant: acme')
[[ $e == "$f" ]] || fail "fingerprint_ignore not applied: '$e' vs '$f'"
[[ $(tail -n 1 <<<"$e") =~ ^fingerprint:\ [0-9a-f]{32}$ ]] || fail "route algorithm not applied: $e"
grep -qx 'header x-tenant: acme' <<<"$e" || fail "fingerprint_headers not shown: $e"

# 6. A bad setting: exit code 2 and one line naming it.
printf 'fingerprint_ignore = ["timestamp"]\n' >"$work/bad.toml"
set +e
printf '{}' | "$idemctl" fingerprint --method POST --path /x --content-type application/json \
  --config "$work/bad.toml" >/dev/null 2>"$work/err"
status=$?
set -e
[[ $status -eq 2 ]] || fail "bad setting: exit code $status, expected 2"
[[ $(wc -l <"$work/err") -eq 1 ]] || fail "bad setting: stderr is not one line"
grep -q 'fingerprint_ignore' "$work/err" || fail "bad setting not named: $(cat "$work/err")"

if [[ $failures -ne 0 ]]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "idemctl fingerprint: all checks passed"
