#!/usr/bin/env bash
# prometheus.sh: deploy/prometheus/rules.yml is valid (promtool check rules), its
# alerts fire and stay quiet as rules.test.yml says (promtool test rules), and
# every metric name in both files is one a running agate exports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. deploy/checks/lib/names.bash

promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml
# every alert in the file has at least one test case
for a in $(grep -oE 'alert: [A-Za-z]+' deploy/prometheus/rules.yml | cut -d' ' -f2); do
  grep -q "alertname: $a\$" deploy/prometheus/rules.test.yml || { echo "no test for alert $a" >&2; exit 1; }
done
check_metric_names deploy/prometheus/rules.yml deploy/prometheus/rules.test.yml
