// Package deploy holds no Go code: its directory ships what operators load
// next to a worker, and its tests keep those files true.
//
//   - prometheus/alerts.yml: alerting rules (group eddy), with promtool unit
//     tests in prometheus/alerts_test.yml.
//   - grafana/eddy.json: a dashboard over the metrics of docs/monitoring.md.
//
// The tests run `promtool check rules` and `promtool test rules` on the rules,
// and check that every metric the rules and the dashboard name is one the
// worker exports. They fail, and never skip, when promtool is missing.
package deploy
