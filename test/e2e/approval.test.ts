// The approval service end to end against the REAL kube-apiserver v1.20.2: sidecars
// authenticate to it with projected-style service-account tokens (TokenRequest, audience
// `agentgate`), verified through the real issuer's JWKS or TokenReview; `kubectl delete`
// held until an approver approves.
//
// Deferred by plan: this suite follows once the approval service and its sidecar wiring are
// settled. The cluster side it relies on is already proven in kube-cluster.test.ts (TokenRequest
// tokens of audience agentgate verify against the issuer's JWKS with jose).

describe('approval service e2e on the REAL kube-apiserver v1.20.2', function () {
  it('authenticates sidecars with real TokenRequest tokens and holds kubectl delete until approved', function () {
    this.skip(); // deferred by plan (issue 7 schedules the approval e2e after the service lands)
  });
});
