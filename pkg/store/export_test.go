package store

// HotQueries is hotQueries, for TestQueryPlans.
var HotQueries = hotQueries
