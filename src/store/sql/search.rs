/// Appends `AND <filter>` for each filter, matching rows of `resources r`.
fn push_filters(qb: &mut QueryBuilder<Db>, req: &SearchRequest) {
    qb.push(" WHERE r.resource_type = ")
        .push_bind(req.resource_type.clone());
    if let Some(tenancy) = &req.tenancy {
        // The same relation read-by-id decides by (`records_of`): a search never returns what
        // a read would refuse.
        let (column, org) = match tenancy {
            Tenancy::Practice(org) => ("practice", org),
            Tenancy::Service(org) => ("service", org),
        };
        qb.push(format!(
            " AND EXISTS (SELECT 1 FROM resource_parties v WHERE v.resource_type = r.resource_type AND v.resource_id = r.id AND v.{column} = "
        ))
        .push_bind(org.clone())
        .push(")");
    }
    for f in &req.filters {
        match f {
            Filter::Token { param, any_of } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND (");
                push_token_alternatives(qb, "t", any_of);
                qb.push("))");
            }
            Filter::Id { any_of } => {
                qb.push(" AND r.id IN (");
                let mut sep = qb.separated(", ");
                for id in any_of {
                    sep.push_bind(id.clone());
                }
                qb.push(")");
            }
            Filter::Reference { param, any_of } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND t.value IN (");
                let mut sep = qb.separated(", ");
                for v in any_of {
                    sep.push_bind(v.clone());
                }
                qb.push("))");
            }
            Filter::ChainedIdentifier {
                param,
                target,
                any_of,
            } => {
                qb.push(" AND EXISTS (SELECT 1 FROM search_tokens t JOIN search_tokens p ON p.resource_type = ")
                    .push_bind(*target)
                    .push(" AND p.param = 'identifier' AND t.value = ")
                    .push_bind(format!("{target}/"))
                    .push(" || p.resource_id WHERE t.resource_type = r.resource_type AND t.resource_id = r.id AND t.param = ")
                    .push_bind(*param)
                    .push(" AND (");
                push_token_alternatives(qb, "p", any_of);
                qb.push("))");
            }
            Filter::LastUpdated {
                comparator,
                lower,
                upper,
            } => {
                let (op, bound) = match comparator {
                    Comparator::Eq => {
                        qb.push(" AND r.last_updated >= ")
                            .push_bind(lower.clone())
                            .push(" AND r.last_updated < ")
                            .push_bind(upper.clone());
                        continue;
                    }
                    Comparator::Ne => {
                        qb.push(" AND (r.last_updated < ")
                            .push_bind(lower.clone())
                            .push(" OR r.last_updated >= ")
                            .push_bind(upper.clone())
                            .push(")");
                        continue;
                    }
                    Comparator::Gt => (" >= ", upper),
                    Comparator::Ge => (" >= ", lower),
                    Comparator::Lt => (" < ", lower),
                    Comparator::Le => (" < ", upper),
                };
                qb.push(" AND r.last_updated")
                    .push(op)
                    .push_bind(bound.clone());
            }
            Filter::Period {
                param,
                comparator,
                lower,
                upper,
            } => {
                // Indexed as `system` start (inclusive) and end (exclusive) instants.
                let bound = |qb: &mut QueryBuilder<Db>, which: &str, op: &str, value: &str| {
                    qb.push(" EXISTS (SELECT 1 FROM search_tokens d WHERE d.resource_type = r.resource_type AND d.resource_id = r.id AND d.param = ")
                        .push_bind(*param)
                        .push(format!(" AND d.system = '{which}' AND d.value {op} "))
                        .push_bind(value.to_string())
                        .push(")");
                };
                qb.push(" AND");
                match comparator {
                    Comparator::Ge => bound(qb, "end", ">", lower),
                    Comparator::Gt => bound(qb, "end", ">", upper),
                    Comparator::Le => bound(qb, "start", "<", upper),
                    Comparator::Lt => bound(qb, "start", "<", lower),
                    // R4 search, date prefixes: `eq` holds when "the range of the search value
                    // fully contains the range of the target value" (an open-ended period is
                    // contained by none); `ne`, when it does not.
                    Comparator::Eq | Comparator::Ne => {
                        if *comparator == Comparator::Ne {
                            qb.push(" NOT");
                        }
                        qb.push(" (");
                        bound(qb, "start", ">=", lower);
                        qb.push(" AND");
                        bound(qb, "end", "<=", upper);
                        qb.push(")");
                    }
                }
            }
        }
    }
}

fn push_order(qb: &mut QueryBuilder<Db>, req: &SearchRequest) {
    const DATE_START: &str = "(SELECT s.value FROM search_tokens s WHERE s.resource_type = r.resource_type AND s.resource_id = r.id AND s.param = 'date' AND s.system = 'start')";
    qb.push(match req.sort {
        Sort::LastUpdatedDesc => " ORDER BY r.last_updated DESC, r.id".to_string(),
        Sort::LastUpdatedAsc => " ORDER BY r.last_updated ASC, r.id".to_string(),
        Sort::DateAsc => format!(" ORDER BY {DATE_START} ASC, r.id"),
        Sort::DateDesc => format!(" ORDER BY {DATE_START} DESC, r.id"),
    });
}

fn push_token_alternatives(qb: &mut QueryBuilder<Db>, alias: &str, any_of: &[Token]) {
    for (i, token) in any_of.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        qb.push("(1 = 1");
        if let Some(code) = &token.code {
            qb.push(format!(" AND {alias}.value = "))
                .push_bind(code.clone());
        }
        if let Some(system) = &token.system {
            qb.push(format!(" AND {alias}.system = "))
                .push_bind(system.clone());
        }
        qb.push(")");
    }
}
