//! Search: the filter grammar, and its compilation into parameterised SQL for each searchable entity.
//! User values only ever travel as bound parameters; SQL text is built from fixed fragments.

pub mod compile;
pub mod parser;
pub mod sql_builder;

pub use parser::{
    Comparator, Comparison, FilterExpression, FilterSyntaxError, FilterValue, OrderClause, parse_filter,
    parse_order_clause,
};
pub use sql_builder::{SqlBuilder, SqlValue};
