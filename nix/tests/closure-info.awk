# closureInfo's output layout, without jq: reads the `.attrs.json` Nix writes
# for a derivation with `__structuredAttrs = true` and
# `exportReferencesGraph.closure = [ … ]`, and writes what nixpkgs'
# closureInfo writes from the same JSON:
#   registration    path, narHash, narSize, "" (deriver), reference count,
#                   references (`nix-store --load-db` format)
#   store-paths     one store path a line
#   total-nar-size  the sum of narSize
# Usage: awk -v out=DIR -f closure-info.awk .attrs.json
# The JSON is compact and no closure entry holds a nested object, so each
# entry is the text between one `{` and the next `}`.

function str(o, k,   m) {
    if (!match(o, "\"" k "\":\"[^\"]*\"")) fail("no " k " in " o)
    m = substr(o, RSTART, RLENGTH)
    return substr(m, length(k) + 5, length(m) - length(k) - 5)
}

function num(o, k,   m) {
    if (!match(o, "\"" k "\":[0-9]+")) fail("no " k " in " o)
    m = substr(o, RSTART, RLENGTH)
    return substr(m, length(k) + 4)
}

function fail(msg) {
    print "closure-info.awk: " msg > "/dev/stderr"
    failed = 1
    exit 1
}

{ s = s $0 }

END {
    if (failed) exit 1
    i = index(s, "\"closure\":[{")
    if (!i) fail("no exported closure in .attrs.json")
    s = substr(s, i + 11)
    total = 0
    while (substr(s, 1, 1) == "{") {
        j = index(s, "}")
        o = substr(s, 2, j - 2)
        s = substr(s, j + 1)
        if (substr(s, 1, 1) == ",") s = substr(s, 2)
        path = str(o, "path")
        size = num(o, "narSize")
        r = index(o, "\"references\":[")
        if (!r) fail("no references in " o)
        body = substr(o, r + 14)
        body = substr(body, 1, index(body, "]") - 1)
        gsub(/"/, "", body)
        n = split(body, refs, ",")
        printf "%s\n%s\n%s\n\n%d\n", path, str(o, "narHash"), size, n > (out "/registration")
        for (k = 1; k <= n; k++) print refs[k] > (out "/registration")
        print path > (out "/store-paths")
        total += size
        count++
    }
    if (!count) fail("empty closure")
    print total > (out "/total-nar-size")
}
