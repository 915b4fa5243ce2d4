//! `Schema` (as applied) x `Schema` (wanted) -> `Plan`.

use crate::*;

/// Plans the steps from `current` to `desired`. Pure and deterministic:
/// the same inputs give the same plan, in a fixed order:
/// index drops, table renames, new tables, per-table column changes (renames,
/// additions, alterations, drops), table drops, index creations.
pub fn diff(current: &Schema, desired: &Schema, hints: &Hints) -> Plan {
    let mut plan = Plan::default();
    let mut current = current.clone();

    // Table renames first, so the rest diffs like for like.
    let mut renames = Vec::new();
    for t in &desired.tables {
        if let Some(old) = hints.old_table_name(&t.name) {
            if current.table(&t.name).is_none() && current.table(old).is_some() && desired.table(old).is_none() {
                renames.push((old.to_string(), t.name.clone()));
            }
        }
    }
    for (old, new) in &renames {
        for table in &mut current.tables {
            if table.name == *old {
                table.name = new.clone();
            }
            // Foreign keys follow a renamed table in both dialects.
            for c in &mut table.columns {
                if let Some(r) = &mut c.references {
                    if r.table == *old {
                        r.table = new.clone();
                    }
                }
            }
        }
    }

    let mut index_drops = Vec::new();
    let mut creates = Vec::new();
    let mut column_steps = Vec::new();
    let mut drops = Vec::new();
    let mut index_creates = Vec::new();

    for want in &desired.tables {
        let Some(have) = current.table(&want.name) else {
            creates.push(Step { change: Change::CreateTable { table: want.clone() }, destructive: None, checks: vec![] });
            continue;
        };
        diff_table(have, want, hints, &mut column_steps, &mut plan.hints);
        for ix in &have.indexes {
            // A renamed column keeps its indexes under their old names;
            // the index is rebuilt under the new name.
            if !want.indexes.contains(ix) {
                // Index drops run before table renames: name the table as it is then.
                let table = renames.iter().find(|(_, new)| *new == have.name).map_or(&have.name, |(old, _)| old).clone();
                index_drops.push(Step { change: Change::DropIndex { table, index: ix.clone() }, destructive: None, checks: vec![] });
            }
        }
        for ix in &want.indexes {
            if !have.indexes.contains(ix) {
                let checks = if ix.unique {
                    vec![DataCheck::NoDuplicates { table: want.name.clone(), columns: ix.columns.clone() }]
                } else {
                    vec![]
                };
                index_creates.push(Step {
                    change: Change::CreateIndex { table: want.name.clone(), index: ix.clone() },
                    destructive: None,
                    checks,
                });
            }
        }
    }
    for have in &current.tables {
        if desired.table(&have.name).is_none() {
            drops.push(Step {
                change: Change::DropTable { table: have.name.clone() },
                destructive: Some(format!("drops table `{}` and all its rows", have.name)),
                checks: vec![DataCheck::RowsWithData { table: have.name.clone(), column: None }],
            });
            // A dropped table with the shape of a new one is probably a rename.
            for want in &desired.tables {
                if current.table(&want.name).is_none() && same_shape(have, want) {
                    plan.hints.push(format!(
                        "`{}` is dropped and `{}` created with the same columns; if the entity was renamed, write `(renamed from ...)` on its heading to keep the rows",
                        have.name, want.name
                    ));
                }
            }
        }
    }

    plan.steps.extend(index_drops);
    plan.steps.extend(renames.into_iter().map(|(from, to)| Step {
        change: Change::RenameTable { from, to },
        destructive: None,
        checks: vec![],
    }));
    plan.steps.extend(creates);
    plan.steps.extend(column_steps);
    plan.steps.extend(drops);
    plan.steps.extend(index_creates);
    plan
}

fn same_shape(a: &Table, b: &Table) -> bool {
    a.columns.len() == b.columns.len() && a.columns.iter().zip(&b.columns).all(|(x, y)| x.name == y.name && x.ty == y.ty)
}

fn diff_table(have: &Table, want: &Table, hints: &Hints, steps: &mut Vec<Step>, notes: &mut Vec<String>) {
    let t = &want.name;
    // Column renames, then treat the renamed column as the old one.
    let mut have_cols: Vec<Column> = have.columns.clone();
    let mut renames = Vec::new();
    for c in &want.columns {
        if let Some(old) = hints.old_column_name(t, &c.name) {
            if have.column(&c.name).is_none() && have.column(old).is_some() && want.column(old).is_none() {
                renames.push(Step {
                    change: Change::RenameColumn { table: t.clone(), from: old.to_string(), to: c.name.clone() },
                    destructive: None,
                    checks: vec![],
                });
                for hc in &mut have_cols {
                    if hc.name == old {
                        hc.name = c.name.clone();
                    }
                }
            }
        }
    }
    let find = |name: &str| have_cols.iter().find(|c| c.name == name);
    let mut adds = Vec::new();
    let mut alters = Vec::new();
    let mut drops = Vec::new();
    for c in &want.columns {
        match find(&c.name) {
            None => {
                let backfill = hints.backfill(t, &c.name).cloned();
                let mut checks = Vec::new();
                if !c.nullable && backfill.is_none() {
                    checks.push(DataCheck::TableEmpty { table: t.clone(), column: c.name.clone() });
                }
                adds.push(Step { change: Change::AddColumn { table: t.clone(), column: c.clone(), backfill }, destructive: None, checks });
            }
            Some(old) if old != c => alters.push(alter(t, old, c, hints)),
            Some(_) => {}
        }
    }
    for old in &have_cols {
        if want.column(&old.name).is_none() {
            drops.push(Step {
                change: Change::DropColumn { table: t.clone(), column: old.name.clone() },
                destructive: Some(format!("drops the values of `{t}.{}`", old.name)),
                checks: vec![DataCheck::RowsWithData { table: t.clone(), column: Some(old.name.clone()) }],
            });
            for new in &want.columns {
                if find(&new.name).is_none() && new.ty == old.ty && new.references == old.references {
                    notes.push(format!(
                        "`{t}.{}` is dropped and `{t}.{}` added with the same type; if the field was renamed, write `renamed from {}` in its rules to keep the values",
                        old.name, new.name, old.name
                    ));
                }
            }
        }
    }
    steps.extend(renames);
    steps.extend(adds);
    steps.extend(alters);
    steps.extend(drops);
}

fn alter(t: &str, from: &Column, to: &Column, hints: &Hints) -> Step {
    let mut checks = Vec::new();
    let mut destructive = None;
    let mut backfill = None;
    let mut invalid_to = None;
    if from.ty != to.ty {
        if !from.ty.widens_to(to.ty) {
            destructive = Some(format!(
                "{} cannot hold every {} value; each value is converted and the original is not kept",
                to.ty.as_str(),
                from.ty.as_str()
            ));
        }
        if !from.ty.widens_to(to.ty) || to.ty == ColumnType::Json {
            checks.push(DataCheck::Converts { table: t.into(), column: to.name.clone(), from: from.ty, to: to.ty });
        }
    }
    if from.nullable && !to.nullable {
        backfill = hints.backfill(t, &to.name).cloned();
        if backfill.is_none() {
            checks.push(DataCheck::NoNulls { table: t.into(), column: to.name.clone() });
        }
    }
    if let Some(check) = &to.check {
        let loosened = from.check.as_ref().is_some_and(|old| check.admits_all_of(old)) && from.ty == to.ty;
        if !loosened {
            checks.push(DataCheck::Satisfies { table: t.into(), column: to.name.clone(), check: check.clone() });
            if matches!(check, Check::OneOf(_)) && matches!(from.check, Some(Check::OneOf(_))) {
                // The field's default if it has one, else no value (when allowed).
                invalid_to = hints.backfill(t, &to.name).cloned().or_else(|| to.nullable.then_some(Backfill::Value(DbValue::Null)));
            }
        }
    }
    match (&from.references, &to.references) {
        (Some(a), Some(b)) if a.table != b.table => {
            checks.push(DataCheck::ReferencesExist { table: t.into(), column: to.name.clone(), target: b.table.clone() });
        }
        (None, Some(b)) => checks.push(DataCheck::ReferencesExist { table: t.into(), column: to.name.clone(), target: b.table.clone() }),
        _ => {}
    }
    Step { change: Change::AlterColumn { table: t.into(), from: from.clone(), to: to.clone(), backfill, invalid_to }, destructive, checks }
}
