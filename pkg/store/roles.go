package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/lib/pq"
)

// SetDeploymentRoles makes the table deployment_roles say exactly roles
// (deployment name → the database role its worker logs in as, which is
// its Unix user: config's Deployment.RunsAs), in one transaction. The
// runs table's row-level security (sql/000010) lets a deployment's role
// read and write only the runs of the deployments mapped to it here;
// dh-route calls this when it starts and on each reload.
func (s *Store) SetDeploymentRoles(ctx context.Context, roles map[string]string) error {
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	users := make([]string, len(names))
	for i, n := range names {
		users[i] = roles[n]
	}
	ctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.db.ExecContext(ctx, `
		WITH want AS (SELECT * FROM unnest($1::text[], $2::name[]) AS w (deployment, role)),
		gone AS (DELETE FROM deployment_roles m WHERE NOT EXISTS (
			SELECT FROM want WHERE want.deployment = m.deployment AND want.role = m.role))
		INSERT INTO deployment_roles (deployment, role) SELECT deployment, role FROM want
		ON CONFLICT (deployment) DO UPDATE SET role = excluded.role
		WHERE deployment_roles.role <> excluded.role`,
		pq.Array(names), pq.Array(users))
	if err != nil {
		return classify(fmt.Errorf("record the deployments' database roles: %w", err))
	}
	return nil
}

// DeploymentRoles returns the table deployment_roles: deployment name →
// role.
func (s *Store) DeploymentRoles(ctx context.Context) (map[string]string, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT deployment, role FROM deployment_roles`)
	if err != nil {
		return nil, classify(fmt.Errorf("read the deployments' database roles: %w", err))
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var d, r string
		if err := rows.Scan(&d, &r); err != nil {
			return nil, classify(fmt.Errorf("read the deployments' database roles: %w", err))
		}
		m[d] = r
	}
	return m, classify(rows.Err())
}

// notOwnDeployment explains a row-level security refusal on runs
// (SQLSTATE 42501 with the policy's message): the role that logged in is
// not the one deployment_roles gives the deployment.
func notOwnDeployment(err error, deployment string) error {
	if e := pq.As(err); e != nil && e.Code == "42501" {
		return fmt.Errorf("%w (hint: the database role this worker logs in as is not the one dh-route recorded for deployment %q: "+
			"set deployments.%s.user to the worker's Unix user in config.toml, then reload dh-route)", err, deployment, deployment)
	}
	return err
}
