#!/usr/bin/env bash
# Black-box test of `idemctl store` on an lmdb data directory (docs/durable-store.md).
# Records are written by the store's test helper, named as a gateway names them.
# Usage: idemctl_store_test.sh PATH/TO/idemctl PATH/TO/idem_lmdb_crash_child
set -euo pipefail

idemctl=${1:?usage: $0 PATH/TO/idemctl PATH/TO/idem_lmdb_crash_child}
helper=${2:?usage: $0 PATH/TO/idemctl PATH/TO/idem_lmdb_crash_child}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$work/data
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# Runs idemctl, keeping stdout, stderr and the exit code in out, err, code.
run() {
  code=0
  "$idemctl" "$@" >"$work/out" 2>"$work/err" || code=$?
  out=$(cat "$work/out")
  err=$(cat "$work/err")
}

# Bad input: one line naming the flag, exit 2.
expect_bad_input() {
  local flag=$1
  shift
  run "$@"
  [[ $code == 2 ]] || fail "$*: exit $code, expected 2"
  [[ $err == *"$flag"* ]] || fail "$*: the error does not name $flag: $err"
  [[ $(wc -l <"$work/err") == 1 ]] || fail "$*: more than one line: $err"
}

id=$("$helper" put "$dir" order-1 'Bearer tok_1')
other=$("$helper" put "$dir" order-2 '')
[[ $id =~ ^[0-9a-f]{64}$ ]] || fail "the helper did not print an id: $id"

# 1. list: one line per record, then the count.
run store list --store "lmdb:$dir"
[[ $code == 0 ]] || fail "list: exit $code: $err"
[[ $out == *"$id"*completed*201* ]] || fail "list does not show $id completed 201: $out"
[[ $out == *"2 records" ]] || fail "list does not end with the count: $out"

# 2. inspect by key and scope (quoted or bare key), by id, and the body on request.
run store inspect --store "lmdb:$dir" --key order-1 --scope 'Bearer tok_1'
[[ $code == 0 && $out == *"id: $id"* && $out == *"status: 201"* ]] ||
  fail "inspect --key: exit $code: $out $err"
run store inspect --store "lmdb:$dir" --key '"order-1"' --scope 'Bearer tok_1'
[[ $code == 0 && $out == *"id: $id"* ]] || fail "inspect with a quoted key: $out $err"
run store inspect --store "lmdb:$dir" --id "$id" --body
[[ $code == 0 && $out == *"body:"*"{}"* ]] || fail "inspect --id --body: $out $err"
[[ $out != *"Bearer"* ]] || fail "inspect shows the identity in clear"
run store inspect --store "lmdb:$dir" --key order-1
[[ $code == 1 && $err == *"no record"* ]] || fail "another scope's record was found: $code $out"
run store inspect --store "lmdb:$dir" --key order-2
[[ $code == 0 && $out == *"id: $other"* ]] || fail "the anonymous scope: $out $err"

# 3. Bad input.
expect_bad_input --store store list --store memory
expect_bad_input --store store list --store lmdb:
expect_bad_input --id store inspect --store "lmdb:$dir" --id xyz
expect_bad_input --id store inspect --store "lmdb:$dir"
expect_bad_input --key store inspect --store "lmdb:$dir" --key 'has space'
expect_bad_input --all store flush --store "lmdb:$dir" --all --id "$id"
expect_bad_input --store store compact

# 4. A directory that is not a store: one line, exit 1, nothing created.
run store list --store "lmdb:$work/absent"
[[ $code == 1 && $err == *"$work/absent"* ]] || fail "missing directory: exit $code: $err"
[[ ! -e $work/absent ]] || fail "list created the directory"

# 5. flush one, then all.
run store flush --store "lmdb:$dir" --key order-1 --scope 'Bearer tok_1'
[[ $code == 0 && $out == "erased $id" ]] || fail "flush --key: $code $out $err"
run store flush --store "lmdb:$dir" --id "$id"
[[ $code == 0 && $out == *"no record"* ]] || fail "second flush: $code $out"
"$helper" put "$dir" order-3 x >/dev/null
run store flush --store "lmdb:$dir" --all
[[ $code == 0 && $out == "erased 2 records from $dir" ]] || fail "flush --all: $out $err"

# 6. compact, and its refusal while another process holds the directory.
run store compact --store "lmdb:$dir"
[[ $code == 0 && $out == compacted* ]] || fail "compact: exit $code: $out $err"
flock -s "$dir/idem.lock" sleep 10 &
holder=$!
sleep 0.3
run store compact --store "lmdb:$dir"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
[[ $code == 1 && $err == *"in use by another process"* ]] || fail "compact while in use: $code $err"

if ((failures > 0)); then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "idemctl store: all checks passed"
