//! Questions over the default cube (`cube_defs/bank_crm.yaml`), each with its SQL twin: the same
//! question asked by hand in DataFusion SQL over the raw tables, as `lattice_engine::source`
//! registers them (`transactions`, `balances`, `customers`, `regions`, `managers`, `products`,
//! `channels`, and `branch_cost`, the table the cost allocation computes).
//!
//! A twin returns the answer's columns in order under the answer's names (levels as
//! `"region.province"`, measures by name, pivot cells as `"2025|txn_amount"`, comparisons as
//! `<m>_prev` and `<m>_change`) and the answer's rows in the answer's order. Questions with
//! `totals` also carry the SQL of the grand totals (one row, a column per key of the answer's
//! `totals`) and of each sub-total, in the answer's order.
//!
//! The twins follow the semantics of `engine/src/query/mod.rs` and the definition:
//!
//! - a fact's region and manager are its customer's; members are the columns' text, time
//!   members `2025`, `2025-Q1`, `2025-03`; the data set has every key in its dimension table
//!   (the suite checks it), so plain joins reach every member and none is `unknown`, except
//!   the age and income bands of customers without an age or an income;
//! - a per-month band is cut from the customer's total of its metric in the fact row's month
//!   (no rows that month: 0), edges left-closed;
//! - balances (`over_time: last`) read only the rows of the closing month: the latest month of
//!   the balances table inside the row's finest time member (without one, overall) that passes
//!   the time filters; `interest_margin` is additive;
//! - member order: text alphabetically, time chronologically, bands in band order, `unknown`
//!   last; ties of an `order` keep member order; NULLs last.
//!
//! Used by the differential tests (`tests/it/query_suite.rs`) and by the query benchmark
//! (`benches/query.rs`, which runs the twins as they are), so it depends on nothing but `std`.

#![allow(
    dead_code,
    reason = "each includer reads its own part; cargo also builds this file as a test target"
)]

/// One question: the query document and its SQL twin.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub name: &'static str,
    /// The query JSON.
    pub query: &'static str,
    /// Its SQL twin: the answer's columns and rows, in order.
    pub sql: &'static str,
    /// With `totals`: the grand totals, one row with a column per key of the answer's `totals`.
    pub totals_sql: Option<&'static str>,
    /// With `totals`: each sub-total (its levels, then the measures), in the answer's order.
    pub subtotals_sql: &'static [&'static str],
}

const fn ask(name: &'static str, query: &'static str, sql: &'static str) -> Question {
    Question {
        name,
        query,
        sql,
        totals_sql: None,
        subtotals_sql: &[],
    }
}

impl Question {
    const fn with_totals(
        self,
        totals: &'static str,
        subtotals: &'static [&'static str],
    ) -> Question {
        Question {
            totals_sql: Some(totals),
            subtotals_sql: subtotals,
            ..self
        }
    }
}

/// The questions, each with its twin.
pub fn questions() -> Vec<Question> {
    let mut all = Vec::new();
    all.extend(slices_and_dice());
    all.extend(drill_and_pivot());
    all.extend(having_order_totals());
    all.extend(compare());
    all.extend(balances_and_both_facts());
    all.extend(bands_managers_and_empty());
    all.extend(more_edges());
    all.extend(shares());
    all
}

fn slices_and_dice() -> Vec<Question> {
    vec![
        ask(
            "grand_total_of_transactions",
            r#"{"measures": ["txn_amount", "txn_count", "fee_income", "active_customers", "avg_ticket"]}"#,
            "SELECT SUM(amount) AS txn_amount, COUNT(*) AS txn_count, SUM(fee_income) AS fee_income,
                COUNT(DISTINCT customer_id) AS active_customers,
                CAST(SUM(amount) AS DOUBLE) / COUNT(*) AS avg_ticket
             FROM transactions",
        ),
        ask(
            "amount_by_province",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["region.province"]}"#,
            r#"SELECT r.province AS "region.province", SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "slice_one_year_by_category",
            r#"{"measures": ["txn_amount", "fee_income", "avg_ticket"], "rows": ["product.category"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
            r#"SELECT p.category AS "product.category", SUM(t.amount) AS txn_amount,
                SUM(t.fee_income) AS fee_income, CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket
             FROM transactions t JOIN products p ON p.product_id = t.product_id
             WHERE to_char(t.txn_date, '%Y') = '2025'
             GROUP BY p.category ORDER BY p.category"#,
        ),
        ask(
            "dice_segments_channels_and_year",
            r#"{"measures": ["txn_count", "active_customers"], "rows": ["region.province", "customer.type"],
                "filters": [{"level": "customer.segment", "op": "in", "values": ["affluent", "private"]},
                            {"level": "channel.channel", "op": "not_in", "values": ["ATM", "POS"]},
                            {"level": "time.year", "op": "eq", "value": "2024"}]}"#,
            r#"SELECT r.province AS "region.province", c.customer_type AS "customer.type",
                COUNT(*) AS txn_count, COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE c.segment IN ('affluent', 'private') AND ch.channel NOT IN ('ATM', 'POS')
               AND to_char(t.txn_date, '%Y') = '2024'
             GROUP BY r.province, c.customer_type ORDER BY r.province, c.customer_type"#,
        ),
        ask(
            "loans_in_by_quarter",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["time.quarter"],
                "filters": [{"level": "product.product", "op": "in", "values": ["Mortgage", "Auto Loan", "Consumer Loan"]}]}"#,
            r#"SELECT to_char(t.txn_date, '%Y') || '-Q' || CAST(CAST(date_part('quarter', t.txn_date) AS BIGINT) AS VARCHAR) AS "time.quarter",
                SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t JOIN products p ON p.product_id = t.product_id
             WHERE p.product_name IN ('Mortgage', 'Auto Loan', 'Consumer Loan')
             GROUP BY 1 ORDER BY 1"#,
        ),
        ask(
            "channels_not_in",
            r#"{"measures": ["txn_count", "fee_income"], "rows": ["channel.channel"],
                "filters": [{"level": "channel.channel", "op": "not_in", "values": ["counter", "phone"]}]}"#,
            r#"SELECT ch.channel AS "channel.channel", COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
             FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE ch.channel NOT IN ('counter', 'phone')
             GROUP BY ch.channel ORDER BY ch.channel"#,
        ),
        ask(
            "months_between",
            r#"{"measures": ["txn_amount", "active_customers", "avg_ticket"], "rows": ["time.month"],
                "filters": [{"level": "time.month", "op": "between", "values": ["2024-11", "2025-02"]}]}"#,
            r#"SELECT to_char(txn_date, '%Y-%m') AS "time.month", SUM(amount) AS txn_amount,
                COUNT(DISTINCT customer_id) AS active_customers,
                CAST(SUM(amount) AS DOUBLE) / COUNT(*) AS avg_ticket
             FROM transactions
             WHERE txn_date >= DATE '2024-11-01' AND txn_date < DATE '2025-03-01'
             GROUP BY 1 ORDER BY 1"#,
        ),
        ask(
            "income_bands_between_by_segment",
            r#"{"measures": ["txn_amount"], "rows": ["customer.income_band", "customer.segment"],
                "filters": [{"level": "customer.income_band", "op": "between", "values": ["8k-15k", "30k-80k"]}]}"#,
            r#"WITH banded AS (
               SELECT t.amount, c.segment,
                   CASE WHEN c.monthly_income < 15000 THEN 2 WHEN c.monthly_income < 30000 THEN 3 ELSE 4 END AS band
               FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
               WHERE c.monthly_income >= 8000 AND c.monthly_income < 80000)
             SELECT CASE band WHEN 2 THEN '8k-15k' WHEN 3 THEN '15k-30k' ELSE '30k-80k' END AS "customer.income_band",
                segment AS "customer.segment", SUM(amount) AS txn_amount
             FROM banded GROUP BY band, segment ORDER BY band, segment"#,
        ),
        ask(
            "age_bands_between_by_province",
            r#"{"measures": ["active_customers", "txn_count"], "rows": ["region.province"],
                "filters": [{"level": "customer.age_band", "op": "between", "values": ["25-34", "45-54"]}]}"#,
            r#"SELECT r.province AS "region.province", COUNT(DISTINCT t.customer_id) AS active_customers,
                COUNT(*) AS txn_count
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE c.age >= 25 AND c.age < 55
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "cities_by_prefix",
            r#"{"measures": ["txn_amount"], "rows": ["region.city"],
                "filters": [{"level": "region.city", "op": "prefix", "value": "Wu"}]}"#,
            r#"SELECT r.city AS "region.city", SUM(t.amount) AS txn_amount
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.city LIKE 'Wu%'
             GROUP BY r.city ORDER BY r.city"#,
        ),
        ask(
            "products_by_search_ignoring_case",
            r#"{"measures": ["txn_amount", "active_customers"], "rows": ["product.product"],
                "filters": [{"level": "product.product", "op": "search", "value": "CARD"}],
                "order": [{"by": "txn_amount", "dir": "desc"}]}"#,
            r#"SELECT p.product_name AS "product.product", SUM(t.amount) AS txn_amount,
                COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t JOIN products p ON p.product_id = t.product_id
             WHERE lower(p.product_name) LIKE '%card%'
             GROUP BY p.product_name ORDER BY txn_amount DESC, p.product_name"#,
        ),
        ask(
            "derived_avg_ticket_by_channel",
            r#"{"measures": ["avg_ticket", "txn_amount", "txn_count"], "rows": ["channel.channel"],
                "order": [{"by": "avg_ticket", "dir": "desc"}]}"#,
            r#"SELECT ch.channel AS "channel.channel", CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket,
                SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
             GROUP BY ch.channel ORDER BY avg_ticket DESC, ch.channel"#,
        ),
        ask(
            "distinct_active_customers_by_month_of_2024",
            r#"{"measures": ["active_customers"], "rows": ["time.month"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2024"}]}"#,
            r#"SELECT to_char(txn_date, '%Y-%m') AS "time.month", COUNT(DISTINCT customer_id) AS active_customers
             FROM transactions WHERE to_char(txn_date, '%Y') = '2024'
             GROUP BY 1 ORDER BY 1"#,
        ),
    ]
}

fn drill_and_pivot() -> Vec<Question> {
    vec![
        ask(
            "drill_down_province_to_cities",
            r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.city"],
                "filters": [{"level": "region.province", "op": "eq", "value": "Zhejiang"}]}"#,
            r#"SELECT r.city AS "region.city", SUM(t.amount) AS txn_amount,
                COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.province = 'Zhejiang'
             GROUP BY r.city ORDER BY r.city"#,
        ),
        ask(
            "drill_down_city_to_branches",
            r#"{"measures": ["txn_count", "fee_income"], "rows": ["region.branch"],
                "filters": [{"level": "region.city", "op": "eq", "value": "Hangzhou"}]}"#,
            r#"SELECT r.branch AS "region.branch", COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.city = 'Hangzhou'
             GROUP BY r.branch ORDER BY r.branch"#,
        ),
        ask(
            "roll_up_branches_to_provinces_and_cities",
            r#"{"measures": ["txn_amount"], "rows": ["region.province", "region.city"],
                "filters": [{"level": "region.branch", "op": "in", "values": ["Wuhan East", "Chengdu South", "Hangzhou West", "Hangzhou North"]}]}"#,
            r#"SELECT r.province AS "region.province", r.city AS "region.city", SUM(t.amount) AS txn_amount
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.branch IN ('Wuhan East', 'Chengdu South', 'Hangzhou West', 'Hangzhou North')
             GROUP BY r.province, r.city ORDER BY r.province, r.city"#,
        ),
        ask(
            "years_and_quarters_with_subtotals",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["time.year", "time.quarter"], "totals": true}"#,
            r#"SELECT to_char(txn_date, '%Y') AS "time.year",
                to_char(txn_date, '%Y') || '-Q' || CAST(CAST(date_part('quarter', txn_date) AS BIGINT) AS VARCHAR) AS "time.quarter",
                SUM(amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions GROUP BY 1, 2 ORDER BY 1, 2"#,
        )
        .with_totals(
            "SELECT SUM(amount) AS txn_amount, COUNT(*) AS txn_count FROM transactions",
            &[r#"SELECT to_char(txn_date, '%Y') AS "time.year", SUM(amount) AS txn_amount, COUNT(*) AS txn_count
                 FROM transactions GROUP BY 1 ORDER BY 1"#],
        ),
        ask(
            "months_of_a_quarter",
            r#"{"measures": ["fee_income", "active_customers"], "rows": ["time.month"],
                "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q2"}]}"#,
            r#"SELECT to_char(txn_date, '%Y-%m') AS "time.month", SUM(fee_income) AS fee_income,
                COUNT(DISTINCT customer_id) AS active_customers
             FROM transactions WHERE txn_date >= DATE '2025-04-01' AND txn_date < DATE '2025-07-01'
             GROUP BY 1 ORDER BY 1"#,
        ),
        ask(
            "pivot_provinces_by_year",
            r#"{"measures": ["txn_amount"], "rows": ["region.province"], "columns": ["time.year"]}"#,
            r#"SELECT r.province AS "region.province",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2024' THEN t.amount END) AS "2024|txn_amount",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2025' THEN t.amount END) AS "2025|txn_amount"
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "pivot_segments_by_channel_with_totals",
            r#"{"measures": ["txn_count"], "rows": ["customer.segment"], "columns": ["channel.channel"], "totals": true}"#,
            r#"SELECT c.segment AS "customer.segment",
                SUM(CASE WHEN ch.channel = 'ATM' THEN 1 END) AS "ATM|txn_count",
                SUM(CASE WHEN ch.channel = 'POS' THEN 1 END) AS "POS|txn_count",
                SUM(CASE WHEN ch.channel = 'counter' THEN 1 END) AS "counter|txn_count",
                SUM(CASE WHEN ch.channel = 'mobile' THEN 1 END) AS "mobile|txn_count",
                SUM(CASE WHEN ch.channel = 'online' THEN 1 END) AS "online|txn_count",
                SUM(CASE WHEN ch.channel = 'phone' THEN 1 END) AS "phone|txn_count"
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN channels ch ON ch.channel_id = t.channel_id
             GROUP BY c.segment ORDER BY c.segment"#,
        )
        .with_totals(
            r#"SELECT COUNT(*) AS txn_count,
                SUM(CASE WHEN ch.channel = 'ATM' THEN 1 END) AS "ATM|txn_count",
                SUM(CASE WHEN ch.channel = 'POS' THEN 1 END) AS "POS|txn_count",
                SUM(CASE WHEN ch.channel = 'counter' THEN 1 END) AS "counter|txn_count",
                SUM(CASE WHEN ch.channel = 'mobile' THEN 1 END) AS "mobile|txn_count",
                SUM(CASE WHEN ch.channel = 'online' THEN 1 END) AS "online|txn_count",
                SUM(CASE WHEN ch.channel = 'phone' THEN 1 END) AS "phone|txn_count"
             FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id"#,
            // In a pivot, the row totals: every segment across the channels.
            &[r#"SELECT c.segment AS "customer.segment", COUNT(*) AS txn_count
                 FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
                 GROUP BY c.segment ORDER BY c.segment"#],
        ),
        ask(
            "pivot_with_having_drops_cells_and_columns",
            r#"{"measures": ["txn_count", "txn_amount"], "rows": ["channel.channel"], "columns": ["customer.type"],
                "having": [{"measure": "txn_count", "op": "gt", "value": 600}]}"#,
            // Cells with more than 600 transactions (the others are empty); a channel without
            // one is gone.
            r#"WITH cell AS (
               SELECT ch.channel, c.customer_type, COUNT(*) AS txn_count, SUM(t.amount) AS txn_amount
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN channels ch ON ch.channel_id = t.channel_id
               GROUP BY ch.channel, c.customer_type
               HAVING COUNT(*) > 600)
             SELECT k.channel AS "channel.channel",
                corp.txn_count AS "corporate|txn_count", corp.txn_amount AS "corporate|txn_amount",
                ind.txn_count AS "individual|txn_count", ind.txn_amount AS "individual|txn_amount"
             FROM (SELECT DISTINCT channel FROM cell) k
             LEFT JOIN cell corp ON corp.channel = k.channel AND corp.customer_type = 'corporate'
             LEFT JOIN cell ind ON ind.channel = k.channel AND ind.customer_type = 'individual'
             ORDER BY k.channel"#,
        ),
        ask(
            "pivot_with_having_drops_a_whole_column",
            r#"{"measures": ["txn_count"], "rows": ["channel.channel"], "columns": ["customer.type"],
                "having": [{"measure": "txn_count", "op": "gt", "value": 1000}]}"#,
            // No corporate cell has more than 1000 transactions: no corporate column.
            r#"SELECT ch.channel AS "channel.channel", COUNT(*) AS "individual|txn_count"
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE c.customer_type = 'individual'
             GROUP BY ch.channel HAVING COUNT(*) > 1000 ORDER BY ch.channel"#,
        ),
        ask(
            "pivot_ordered_by_row_total",
            r#"{"measures": ["fee_income"], "rows": ["region.province"], "columns": ["customer.type"],
                "order": [{"by": "fee_income", "dir": "desc"}], "limit": 3}"#,
            // Rows by the province's fee income across both types.
            r#"WITH cell AS (
               SELECT r.province, c.customer_type, SUM(t.fee_income) AS fee_income
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN regions r ON r.region_id = c.region_id
               GROUP BY r.province, c.customer_type),
             total AS (SELECT province, SUM(fee_income) AS fee_income FROM cell GROUP BY province)
             SELECT total.province AS "region.province",
                corp.fee_income AS "corporate|fee_income", ind.fee_income AS "individual|fee_income"
             FROM total
             LEFT JOIN cell corp ON corp.province = total.province AND corp.customer_type = 'corporate'
             LEFT JOIN cell ind ON ind.province = total.province AND ind.customer_type = 'individual'
             ORDER BY total.fee_income DESC, total.province LIMIT 3"#,
        ),
        ask(
            "pivot_on_two_column_levels",
            r#"{"measures": ["txn_count"], "rows": ["product.category"], "columns": ["time.year", "customer.type"]}"#,
            r#"SELECT p.category AS "product.category",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2024' AND c.customer_type = 'corporate' THEN 1 END) AS "2024|corporate|txn_count",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2024' AND c.customer_type = 'individual' THEN 1 END) AS "2024|individual|txn_count",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2025' AND c.customer_type = 'corporate' THEN 1 END) AS "2025|corporate|txn_count",
                SUM(CASE WHEN to_char(t.txn_date, '%Y') = '2025' AND c.customer_type = 'individual' THEN 1 END) AS "2025|individual|txn_count"
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN products p ON p.product_id = t.product_id
             GROUP BY p.category ORDER BY p.category"#,
        ),
    ]
}

fn having_order_totals() -> Vec<Question> {
    vec![
        ask(
            "busy_branches_by_having",
            r#"{"measures": ["txn_count", "txn_amount"], "rows": ["region.branch"],
                "having": [{"measure": "txn_count", "op": "ge", "value": 480}],
                "order": [{"by": "txn_count", "dir": "desc"}]}"#,
            r#"SELECT r.branch AS "region.branch", COUNT(*) AS txn_count, SUM(t.amount) AS txn_amount
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.branch HAVING COUNT(*) >= 480
             ORDER BY txn_count DESC, r.branch"#,
        ),
        ask(
            "products_by_two_havings",
            r#"{"measures": ["active_customers", "avg_ticket"], "rows": ["product.product"],
                "having": [{"measure": "active_customers", "op": "gt", "value": 30},
                           {"measure": "avg_ticket", "op": "lt", "value": 20000}]}"#,
            r#"SELECT p.product_name AS "product.product", COUNT(DISTINCT t.customer_id) AS active_customers,
                CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket
             FROM transactions t JOIN products p ON p.product_id = t.product_id
             GROUP BY p.product_name
             HAVING COUNT(DISTINCT t.customer_id) > 30 AND CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) < 20000
             ORDER BY p.product_name"#,
        ),
        ask(
            "top_5_branches_by_amount",
            r#"{"measures": ["txn_amount"], "rows": ["region.branch"],
                "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 5}"#,
            r#"SELECT r.branch AS "region.branch", SUM(t.amount) AS txn_amount
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.branch ORDER BY txn_amount DESC, r.branch LIMIT 5"#,
        ),
        ask(
            "a_page_of_managers_in_reverse",
            r#"{"measures": ["txn_count"], "rows": ["manager.manager"],
                "order": [{"by": "manager.manager", "dir": "desc"}], "limit": 10, "offset": 20}"#,
            r#"SELECT m.manager_name AS "manager.manager", COUNT(*) AS txn_count
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id
             GROUP BY m.manager_name ORDER BY m.manager_name DESC LIMIT 10 OFFSET 20"#,
        ),
        ask(
            "ties_keep_member_order",
            r#"{"measures": ["active_customers"], "rows": ["region.branch"],
                "order": [{"by": "active_customers", "dir": "desc"}], "limit": 20, "offset": 3}"#,
            r#"SELECT r.branch AS "region.branch", COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.branch ORDER BY active_customers DESC, r.branch LIMIT 20 OFFSET 3"#,
        ),
        ask(
            "order_by_level_then_measure",
            r#"{"measures": ["txn_amount"], "rows": ["region.province", "product.category"],
                "order": [{"by": "region.province", "dir": "desc"}, {"by": "txn_amount"}]}"#,
            r#"SELECT r.province AS "region.province", p.category AS "product.category", SUM(t.amount) AS txn_amount
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             JOIN products p ON p.product_id = t.product_id
             GROUP BY r.province, p.category ORDER BY r.province DESC, txn_amount, p.category"#,
        ),
        ask(
            "provinces_and_cities_with_totals",
            r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.province", "region.city"], "totals": true}"#,
            r#"SELECT r.province AS "region.province", r.city AS "region.city", SUM(t.amount) AS txn_amount,
                COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.province, r.city ORDER BY r.province, r.city"#,
        )
        .with_totals(
            "SELECT SUM(amount) AS txn_amount, COUNT(DISTINCT customer_id) AS active_customers FROM transactions",
            &[r#"SELECT r.province AS "region.province", SUM(t.amount) AS txn_amount,
                    COUNT(DISTINCT t.customer_id) AS active_customers
                 FROM transactions t
                 JOIN customers c ON c.customer_id = t.customer_id
                 JOIN regions r ON r.region_id = c.region_id
                 GROUP BY r.province ORDER BY r.province"#],
        ),
        ask(
            "top_3_with_totals_over_everything",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["region.branch"],
                "having": [{"measure": "txn_count", "op": "gt", "value": 300}],
                "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 3, "totals": true}"#,
            r#"SELECT r.branch AS "region.branch", SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             GROUP BY r.branch HAVING COUNT(*) > 300
             ORDER BY txn_amount DESC, r.branch LIMIT 3"#,
        )
        // Totals ignore having and limit.
        .with_totals(
            "SELECT SUM(amount) AS txn_amount, COUNT(*) AS txn_count FROM transactions",
            &[],
        ),
        ask(
            "three_levels_of_subtotals",
            r#"{"measures": ["txn_count", "fee_income"], "rows": ["time.year", "customer.type", "channel.channel"],
                "filters": [{"level": "product.category", "op": "eq", "value": "card"}], "totals": true}"#,
            r#"SELECT to_char(t.txn_date, '%Y') AS "time.year", c.customer_type AS "customer.type",
                ch.channel AS "channel.channel", COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN channels ch ON ch.channel_id = t.channel_id
             JOIN products p ON p.product_id = t.product_id
             WHERE p.category = 'card'
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"#,
        )
        .with_totals(
            "SELECT COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
             FROM transactions t JOIN products p ON p.product_id = t.product_id
             WHERE p.category = 'card'",
            &[
                r#"SELECT to_char(t.txn_date, '%Y') AS "time.year", COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
                   FROM transactions t JOIN products p ON p.product_id = t.product_id
                   WHERE p.category = 'card' GROUP BY 1 ORDER BY 1"#,
                r#"SELECT to_char(t.txn_date, '%Y') AS "time.year", c.customer_type AS "customer.type",
                       COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
                   FROM transactions t
                   JOIN customers c ON c.customer_id = t.customer_id
                   JOIN products p ON p.product_id = t.product_id
                   WHERE p.category = 'card' GROUP BY 1, 2 ORDER BY 1, 2"#,
            ],
        ),
    ]
}

fn compare() -> Vec<Question> {
    vec![
        ask(
            "month_on_month_across_years_on_rows",
            // January's previous month is December of the year before: the year on the rows
            // moves with the month.
            r#"{"measures": ["txn_count"], "rows": ["time.year", "time.month"],
                "compare": {"level": "time.month", "lag": 1}}"#,
            r#"WITH by_month AS (
               SELECT date_trunc('month', txn_date) AS period, COUNT(*) AS n FROM transactions GROUP BY 1)
             SELECT to_char(cur.period, '%Y') AS "time.year", to_char(cur.period, '%Y-%m') AS "time.month",
                cur.n AS txn_count, prev.n AS txn_count_prev,
                CAST(cur.n - prev.n AS DOUBLE) / NULLIF(prev.n, 0) AS txn_count_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '1 month'
             ORDER BY cur.period"#,
        ),
        ask(
            "year_on_year_with_months_on_rows",
            // The year before (2025, 2025-03) is (2024, 2024-03): the month moves with the year.
            r#"{"measures": ["fee_income"], "rows": ["time.year", "time.month"],
                "compare": {"level": "time.year", "lag": 1}}"#,
            r#"WITH by_month AS (
               SELECT date_trunc('month', txn_date) AS period, SUM(fee_income) AS fee_income
               FROM transactions GROUP BY 1)
             SELECT to_char(cur.period, '%Y') AS "time.year", to_char(cur.period, '%Y-%m') AS "time.month",
                cur.fee_income, prev.fee_income AS fee_income_prev,
                CAST(cur.fee_income - prev.fee_income AS DOUBLE) / NULLIF(CAST(prev.fee_income AS DOUBLE), 0) AS fee_income_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '12 months'
             ORDER BY cur.period"#,
        ),
        ask(
            "month_on_month_in_2025",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["time.month"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}],
                "compare": {"level": "time.month", "lag": 1}}"#,
            // The year filter picks the months shown, not their predecessors: January's is
            // December 2024.
            r#"WITH by_month AS (
               SELECT date_trunc('month', txn_date) AS period, SUM(amount) AS txn_amount, COUNT(*) AS txn_count
               FROM transactions GROUP BY 1)
             SELECT to_char(cur.period, '%Y-%m') AS "time.month",
                cur.txn_amount, prev.txn_amount AS txn_amount_prev,
                CAST(cur.txn_amount - prev.txn_amount AS DOUBLE) / NULLIF(CAST(prev.txn_amount AS DOUBLE), 0) AS txn_amount_change,
                cur.txn_count, prev.txn_count AS txn_count_prev,
                CAST(cur.txn_count - prev.txn_count AS DOUBLE) / NULLIF(prev.txn_count, 0) AS txn_count_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '1 month'
             WHERE to_char(cur.period, '%Y') = '2025'
             ORDER BY cur.period"#,
        ),
        ask(
            "year_on_year_by_month",
            r#"{"measures": ["fee_income", "active_customers"], "rows": ["time.month"],
                "compare": {"level": "time.month", "lag": 12}}"#,
            r#"WITH by_month AS (
               SELECT date_trunc('month', txn_date) AS period, SUM(fee_income) AS fee_income,
                   COUNT(DISTINCT customer_id) AS active_customers
               FROM transactions GROUP BY 1)
             SELECT to_char(cur.period, '%Y-%m') AS "time.month",
                cur.fee_income, prev.fee_income AS fee_income_prev,
                CAST(cur.fee_income - prev.fee_income AS DOUBLE) / NULLIF(CAST(prev.fee_income AS DOUBLE), 0) AS fee_income_change,
                cur.active_customers, prev.active_customers AS active_customers_prev,
                CAST(cur.active_customers - prev.active_customers AS DOUBLE) / NULLIF(prev.active_customers, 0) AS active_customers_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '12 months'
             ORDER BY cur.period"#,
        ),
        ask(
            "year_on_year_by_province",
            r#"{"measures": ["txn_amount", "avg_ticket"], "rows": ["region.province", "time.year"],
                "compare": {"level": "time.year", "lag": 1}}"#,
            r#"WITH cell AS (
               SELECT r.province, CAST(to_char(t.txn_date, '%Y') AS BIGINT) AS year, SUM(t.amount) AS txn_amount,
                   CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN regions r ON r.region_id = c.region_id
               GROUP BY 1, 2)
             SELECT cur.province AS "region.province", CAST(cur.year AS VARCHAR) AS "time.year",
                cur.txn_amount, prev.txn_amount AS txn_amount_prev,
                CAST(cur.txn_amount - prev.txn_amount AS DOUBLE) / NULLIF(CAST(prev.txn_amount AS DOUBLE), 0) AS txn_amount_change,
                cur.avg_ticket, prev.avg_ticket AS avg_ticket_prev,
                (cur.avg_ticket - prev.avg_ticket) / NULLIF(prev.avg_ticket, 0) AS avg_ticket_change
             FROM cell cur LEFT JOIN cell prev ON prev.province = cur.province AND prev.year = cur.year - 1
             ORDER BY cur.province, cur.year"#,
        ),
        ask(
            "quarters_against_a_year_before_on_mobile",
            r#"{"measures": ["txn_count"], "rows": ["time.quarter"],
                "filters": [{"level": "channel.channel", "op": "eq", "value": "mobile"}],
                "compare": {"level": "time.quarter", "lag": 4}}"#,
            // The channel filter holds for the earlier quarters too.
            r#"WITH by_quarter AS (
               SELECT date_trunc('quarter', t.txn_date) AS period, COUNT(*) AS txn_count
               FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
               WHERE ch.channel = 'mobile' GROUP BY 1)
             SELECT to_char(cur.period, '%Y') || '-Q' || CAST(CAST(date_part('quarter', cur.period) AS BIGINT) AS VARCHAR) AS "time.quarter",
                cur.txn_count, prev.txn_count AS txn_count_prev,
                CAST(cur.txn_count - prev.txn_count AS DOUBLE) / NULLIF(prev.txn_count, 0) AS txn_count_change
             FROM by_quarter cur LEFT JOIN by_quarter prev ON prev.period = cur.period - INTERVAL '12 months'
             ORDER BY cur.period"#,
        ),
        ask(
            "balances_month_on_month_first_half_2025",
            r#"{"measures": ["deposit_balance", "customers"], "rows": ["time.month"],
                "filters": [{"level": "time.month", "op": "between", "values": ["2025-01", "2025-06"]}],
                "compare": {"level": "time.month", "lag": 1}}"#,
            // A month is its own closing month.
            r#"WITH by_month AS (
               SELECT month AS period, SUM(deposit_balance) AS deposit_balance, COUNT(DISTINCT customer_id) AS customers
               FROM balances GROUP BY month)
             SELECT to_char(cur.period, '%Y-%m') AS "time.month",
                cur.deposit_balance, prev.deposit_balance AS deposit_balance_prev,
                CAST(cur.deposit_balance - prev.deposit_balance AS DOUBLE) / NULLIF(CAST(prev.deposit_balance AS DOUBLE), 0) AS deposit_balance_change,
                cur.customers, prev.customers AS customers_prev,
                CAST(cur.customers - prev.customers AS DOUBLE) / NULLIF(prev.customers, 0) AS customers_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '1 month'
             WHERE cur.period BETWEEN DATE '2025-01-01' AND DATE '2025-06-01'
             ORDER BY cur.period"#,
        ),
        ask(
            "deposit_bands_against_the_band_below",
            r#"{"measures": ["txn_count"], "rows": ["customer.deposit_band"],
                "compare": {"level": "customer.deposit_band", "lag": 1}}"#,
            r#"WITH deposits AS (
               SELECT customer_id, month, SUM(deposit_balance) AS deposit FROM balances GROUP BY 1, 2),
             banded AS (
               SELECT CASE WHEN COALESCE(d.deposit, 0) < 10000 THEN 0 WHEN d.deposit < 50000 THEN 1
                           WHEN d.deposit < 200000 THEN 2 WHEN d.deposit < 1000000 THEN 3 ELSE 4 END AS band
               FROM transactions t
               LEFT JOIN deposits d ON d.customer_id = t.customer_id AND d.month = date_trunc('month', t.txn_date)),
             by_band AS (SELECT band, COUNT(*) AS txn_count FROM banded GROUP BY band)
             SELECT CASE cur.band WHEN 0 THEN '<10k' WHEN 1 THEN '10k-50k' WHEN 2 THEN '50k-200k'
                                  WHEN 3 THEN '200k-1M' ELSE '1M+' END AS "customer.deposit_band",
                cur.txn_count, prev.txn_count AS txn_count_prev,
                CAST(cur.txn_count - prev.txn_count AS DOUBLE) / NULLIF(prev.txn_count, 0) AS txn_count_change
             FROM by_band cur LEFT JOIN by_band prev ON prev.band = cur.band - 1
             ORDER BY cur.band"#,
        ),
        ask(
            "pivot_years_against_the_year_before",
            r#"{"measures": ["txn_amount"], "rows": ["region.province"], "columns": ["time.year"],
                "compare": {"level": "time.year", "lag": 1}}"#,
            r#"WITH cell AS (
               SELECT r.province, to_char(t.txn_date, '%Y') AS year, SUM(t.amount) AS txn_amount
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN regions r ON r.region_id = c.region_id
               GROUP BY 1, 2)
             SELECT k.province AS "region.province",
                y24.txn_amount AS "2024|txn_amount", CAST(NULL AS DECIMAL(18, 2)) AS "2024|txn_amount_prev",
                CAST(NULL AS DOUBLE) AS "2024|txn_amount_change",
                y25.txn_amount AS "2025|txn_amount",
                CASE WHEN y25.province IS NOT NULL THEN y24.txn_amount END AS "2025|txn_amount_prev",
                CAST(y25.txn_amount - y24.txn_amount AS DOUBLE) / NULLIF(CAST(y24.txn_amount AS DOUBLE), 0) AS "2025|txn_amount_change"
             FROM (SELECT DISTINCT province FROM cell) k
             LEFT JOIN cell y24 ON y24.province = k.province AND y24.year = '2024'
             LEFT JOIN cell y25 ON y25.province = k.province AND y25.year = '2025'
             ORDER BY k.province"#,
        ),
    ]
}

fn balances_and_both_facts() -> Vec<Question> {
    vec![
        ask(
            "contribution_by_province_highest_first",
            r#"{"measures": ["contribution", "allocated_cost"], "rows": ["region.province"],
                "order": [{"by": "contribution", "dir": "desc"}]}"#,
            // Margin + fees - allocated cost, each fact's part per province, a missing part 0.
            // `branch_cost` is the table the allocation computes at build time (its split is
            // held to SQL in tests/it/allocation.rs), read here as the cube reads it.
            r#"WITH b AS (SELECT r.province AS k, SUM(f.interest_margin) AS v FROM balances f
                 JOIN customers c ON c.customer_id = f.customer_id JOIN regions r ON r.region_id = c.region_id
                 GROUP BY r.province),
             t AS (SELECT r.province AS k, SUM(f.fee_income) AS v FROM transactions f
                 JOIN customers c ON c.customer_id = f.customer_id JOIN regions r ON r.region_id = c.region_id
                 GROUP BY r.province),
             a AS (SELECT r.province AS k, SUM(f.operating_cost) AS v FROM branch_cost f
                 JOIN customers c ON c.customer_id = f.customer_id JOIN regions r ON r.region_id = c.region_id
                 GROUP BY r.province)
             SELECT COALESCE(b.k, t.k, a.k) AS "region.province",
                COALESCE(b.v, 0) + COALESCE(t.v, 0) - COALESCE(a.v, 0) AS contribution,
                a.v AS allocated_cost
             FROM b FULL JOIN t ON t.k = b.k FULL JOIN a ON a.k = COALESCE(b.k, t.k)
             ORDER BY contribution DESC, "region.province""#,
        ),
        ask(
            "balances_grand_total",
            r#"{"measures": ["deposit_balance", "loan_balance", "credit_line", "interest_margin", "customers", "products_held"]}"#,
            // Balances at the latest month; the margin over every month.
            "WITH closing AS (SELECT MAX(month) AS last_month FROM balances)
             SELECT SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance,
                SUM(CASE WHEN b.month = closing.last_month THEN b.credit_line END) AS credit_line,
                SUM(b.interest_margin) AS interest_margin,
                COUNT(DISTINCT b.customer_id) AS customers, COUNT(DISTINCT b.product_id) AS products_held
             FROM balances b CROSS JOIN closing",
        ),
        ask(
            "deposits_by_province_at_the_latest_month",
            r#"{"measures": ["deposit_balance", "customers"], "rows": ["region.province"]}"#,
            r#"WITH closing AS (SELECT MAX(month) AS last_month FROM balances)
             SELECT r.province AS "region.province",
                SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                COUNT(DISTINCT b.customer_id) AS customers
             FROM balances b
             JOIN customers c ON c.customer_id = b.customer_id
             JOIN regions r ON r.region_id = c.region_id
             CROSS JOIN closing
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "balances_by_quarter_close_on_its_last_month",
            r#"{"measures": ["deposit_balance", "loan_balance", "credit_line", "interest_margin"], "rows": ["time.quarter"]}"#,
            r#"WITH closing AS (
               SELECT date_trunc('quarter', month) AS quarter, MAX(month) AS last_month FROM balances GROUP BY 1)
             SELECT to_char(closing.quarter, '%Y') || '-Q' || CAST(CAST(date_part('quarter', closing.quarter) AS BIGINT) AS VARCHAR) AS "time.quarter",
                SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance,
                SUM(CASE WHEN b.month = closing.last_month THEN b.credit_line END) AS credit_line,
                SUM(b.interest_margin) AS interest_margin
             FROM balances b JOIN closing ON closing.quarter = date_trunc('quarter', b.month)
             GROUP BY closing.quarter ORDER BY closing.quarter"#,
        ),
        ask(
            "balances_by_segment_within_months",
            r#"{"measures": ["deposit_balance", "loan_balance", "interest_margin"], "rows": ["customer.segment"],
                "filters": [{"level": "time.month", "op": "between", "values": ["2024-03", "2024-08"]}]}"#,
            // Without a time level the balances close on the last month the filter lets through.
            r#"WITH kept AS (SELECT * FROM balances WHERE month BETWEEN DATE '2024-03-01' AND DATE '2024-08-01'),
             closing AS (SELECT MAX(month) AS last_month FROM kept)
             SELECT c.segment AS "customer.segment",
                SUM(CASE WHEN k.month = closing.last_month THEN k.deposit_balance END) AS deposit_balance,
                SUM(CASE WHEN k.month = closing.last_month THEN k.loan_balance END) AS loan_balance,
                SUM(k.interest_margin) AS interest_margin
             FROM kept k JOIN customers c ON c.customer_id = k.customer_id CROSS JOIN closing
             GROUP BY c.segment ORDER BY c.segment"#,
        ),
        ask(
            "deposits_by_year_within_two_quarters",
            r#"{"measures": ["deposit_balance", "customers"], "rows": ["time.year"],
                "filters": [{"level": "time.quarter", "op": "in", "values": ["2024-Q2", "2025-Q1"]}]}"#,
            // 2024 closes in June (the end of 2024-Q2), 2025 in March.
            r#"WITH kept AS (
               SELECT * FROM balances
               WHERE month BETWEEN DATE '2024-04-01' AND DATE '2024-06-01'
                  OR month BETWEEN DATE '2025-01-01' AND DATE '2025-03-01'),
             closing AS (SELECT to_char(month, '%Y') AS year, MAX(month) AS last_month FROM kept GROUP BY 1)
             SELECT closing.year AS "time.year",
                SUM(CASE WHEN k.month = closing.last_month THEN k.deposit_balance END) AS deposit_balance,
                COUNT(DISTINCT k.customer_id) AS customers
             FROM kept k JOIN closing ON closing.year = to_char(k.month, '%Y')
             GROUP BY closing.year ORDER BY closing.year"#,
        ),
        ask(
            "deposits_by_year_and_category",
            r#"{"measures": ["deposit_balance", "credit_line"], "rows": ["time.year", "product.category"],
                "filters": [{"level": "product.category", "op": "not_in", "values": ["intermediary"]}]}"#,
            // Each year closes on its December, whatever the category filter keeps. (The year
            // comes from the balance, not from `closing`: DataFusion 55 takes `closing.year`,
            // unique in `closing`, for a key of the join and drops `category` from ORDER BY.)
            r#"WITH closing AS (SELECT to_char(month, '%Y') AS year, MAX(month) AS last_month FROM balances GROUP BY 1)
             SELECT to_char(b.month, '%Y') AS "time.year", p.category AS "product.category",
                SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                SUM(CASE WHEN b.month = closing.last_month THEN b.credit_line END) AS credit_line
             FROM balances b
             JOIN products p ON p.product_id = b.product_id
             JOIN closing ON closing.year = to_char(b.month, '%Y')
             WHERE p.category <> 'intermediary'
             GROUP BY 1, 2 ORDER BY 1, 2"#,
        ),
        ask(
            "structured_notes_by_city_null_where_none_close",
            r#"{"measures": ["deposit_balance", "interest_margin"], "rows": ["region.city"],
                "filters": [{"level": "product.product", "op": "eq", "value": "Structured Note"}]}"#,
            // A city whose notes all ended before the latest month has a row, with no balance.
            r#"WITH closing AS (SELECT MAX(month) AS last_month FROM balances)
             SELECT r.city AS "region.city",
                SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                SUM(b.interest_margin) AS interest_margin
             FROM balances b
             JOIN customers c ON c.customer_id = b.customer_id
             JOIN regions r ON r.region_id = c.region_id
             JOIN products p ON p.product_id = b.product_id
             CROSS JOIN closing
             WHERE p.product_name = 'Structured Note'
             GROUP BY r.city ORDER BY r.city"#,
        ),
        ask(
            "both_facts_by_province",
            r#"{"measures": ["txn_amount", "deposit_balance"], "rows": ["region.province"]}"#,
            r#"WITH t AS (
               SELECT r.province, SUM(t.amount) AS txn_amount
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN regions r ON r.region_id = c.region_id
               GROUP BY r.province),
             b AS (
               SELECT r.province,
                   SUM(CASE WHEN b.month = (SELECT MAX(month) FROM balances) THEN b.deposit_balance END) AS deposit_balance
               FROM balances b
               JOIN customers c ON c.customer_id = b.customer_id
               JOIN regions r ON r.region_id = c.region_id
               GROUP BY r.province)
             SELECT COALESCE(t.province, b.province) AS "region.province", t.txn_amount, b.deposit_balance
             FROM t FULL JOIN b ON b.province = t.province
             ORDER BY 1"#,
        ),
        ask(
            "both_facts_by_year_and_segment_with_totals",
            r#"{"measures": ["txn_count", "customers", "loan_balance"], "rows": ["time.year", "customer.segment"], "totals": true}"#,
            r#"WITH t AS (
               SELECT to_char(t.txn_date, '%Y') AS year, c.segment, COUNT(*) AS txn_count
               FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
               GROUP BY 1, 2),
             closing AS (SELECT to_char(month, '%Y') AS year, MAX(month) AS last_month FROM balances GROUP BY 1),
             b AS (
               SELECT closing.year, c.segment, COUNT(DISTINCT b.customer_id) AS customers,
                   SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance
               FROM balances b
               JOIN customers c ON c.customer_id = b.customer_id
               JOIN closing ON closing.year = to_char(b.month, '%Y')
               GROUP BY 1, 2)
             SELECT COALESCE(t.year, b.year) AS "time.year", COALESCE(t.segment, b.segment) AS "customer.segment",
                t.txn_count, b.customers, b.loan_balance
             FROM t FULL JOIN b ON b.year = t.year AND b.segment = t.segment
             ORDER BY 1, 2"#,
        )
        .with_totals(
            "SELECT (SELECT COUNT(*) FROM transactions) AS txn_count,
                (SELECT COUNT(DISTINCT customer_id) FROM balances) AS customers,
                (SELECT SUM(loan_balance) FROM balances WHERE month = (SELECT MAX(month) FROM balances)) AS loan_balance",
            &[r#"WITH t AS (SELECT to_char(txn_date, '%Y') AS year, COUNT(*) AS txn_count FROM transactions GROUP BY 1),
                 closing AS (SELECT to_char(month, '%Y') AS year, MAX(month) AS last_month FROM balances GROUP BY 1),
                 b AS (
                   SELECT closing.year, COUNT(DISTINCT b.customer_id) AS customers,
                       SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance
                   FROM balances b JOIN closing ON closing.year = to_char(b.month, '%Y')
                   GROUP BY 1)
                 SELECT COALESCE(t.year, b.year) AS "time.year", t.txn_count, b.customers, b.loan_balance
                 FROM t FULL JOIN b ON b.year = t.year ORDER BY 1"#],
        ),
        ask(
            "both_facts_products_in_a_month_nulls_last",
            r#"{"measures": ["txn_count", "customers"], "rows": ["product.product"],
                "filters": [{"level": "time.month", "op": "eq", "value": "2024-07"}],
                "order": [{"by": "txn_count"}]}"#,
            // Products held that month without a transaction: no count, listed last.
            r#"WITH t AS (
               SELECT p.product_name, COUNT(*) AS txn_count
               FROM transactions t JOIN products p ON p.product_id = t.product_id
               WHERE to_char(t.txn_date, '%Y-%m') = '2024-07' GROUP BY 1),
             b AS (
               SELECT p.product_name, COUNT(DISTINCT b.customer_id) AS customers
               FROM balances b JOIN products p ON p.product_id = b.product_id
               WHERE b.month = DATE '2024-07-01' GROUP BY 1)
             SELECT COALESCE(t.product_name, b.product_name) AS "product.product", t.txn_count, b.customers
             FROM t FULL JOIN b ON b.product_name = t.product_name
             ORDER BY t.txn_count ASC NULLS LAST, 1"#,
        ),
    ]
}

fn bands_managers_and_empty() -> Vec<Question> {
    vec![
        ask(
            "transactions_by_deposit_band",
            r#"{"measures": ["txn_amount", "active_customers"], "rows": ["customer.deposit_band"]}"#,
            // A transaction carries its customer's deposit band of that month.
            r#"WITH deposits AS (
               SELECT customer_id, month, SUM(deposit_balance) AS deposit FROM balances GROUP BY 1, 2),
             banded AS (
               SELECT t.*, COALESCE(d.deposit, 0) AS deposit FROM transactions t
               LEFT JOIN deposits d ON d.customer_id = t.customer_id AND d.month = date_trunc('month', t.txn_date))
             SELECT CASE WHEN deposit < 10000 THEN '<10k' WHEN deposit < 50000 THEN '10k-50k'
                         WHEN deposit < 200000 THEN '50k-200k' WHEN deposit < 1000000 THEN '200k-1M'
                         ELSE '1M+' END AS "customer.deposit_band",
                SUM(amount) AS txn_amount, COUNT(DISTINCT customer_id) AS active_customers
             FROM banded GROUP BY 1 ORDER BY MIN(deposit)"#,
        ),
        ask(
            "deposits_by_month_and_txn_count_band",
            r#"{"measures": ["deposit_balance", "customers"], "rows": ["time.month", "customer.txn_count_band"],
                "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q4"}]}"#,
            // A balance carries its customer's transaction count band of that month.
            r#"WITH counts AS (
               SELECT customer_id, date_trunc('month', txn_date) AS month, COUNT(*) AS n
               FROM transactions GROUP BY 1, 2),
             banded AS (
               SELECT b.*, COALESCE(k.n, 0) AS n FROM balances b
               LEFT JOIN counts k ON k.customer_id = b.customer_id AND k.month = b.month
               WHERE b.month BETWEEN DATE '2025-10-01' AND DATE '2025-12-01')
             SELECT to_char(month, '%Y-%m') AS "time.month",
                CASE WHEN n < 1 THEN '0' WHEN n < 5 THEN '1-4' WHEN n < 20 THEN '5-19'
                     WHEN n < 50 THEN '20-49' ELSE '50+' END AS "customer.txn_count_band",
                SUM(deposit_balance) AS deposit_balance, COUNT(DISTINCT customer_id) AS customers
             FROM banded GROUP BY 1, 2 ORDER BY 1, MIN(n)"#,
        ),
        ask(
            "pivot_products_bands_by_customer_type",
            r#"{"measures": ["customers"], "rows": ["customer.products_band"], "columns": ["customer.type"]}"#,
            // NULLIF: a cell without balances has no count (every balance has a customer).
            r#"WITH held AS (
               SELECT customer_id, month, COUNT(DISTINCT product_id) AS n FROM balances GROUP BY 1, 2),
             banded AS (
               SELECT b.customer_id, c.customer_type, h.n FROM balances b
               JOIN held h ON h.customer_id = b.customer_id AND h.month = b.month
               JOIN customers c ON c.customer_id = b.customer_id)
             SELECT CASE WHEN n < 1 THEN '0' WHEN n < 2 THEN '1' WHEN n < 3 THEN '2' WHEN n < 5 THEN '3-4'
                         ELSE '5+' END AS "customer.products_band",
                NULLIF(COUNT(DISTINCT CASE WHEN customer_type = 'corporate' THEN customer_id END), 0) AS "corporate|customers",
                NULLIF(COUNT(DISTINCT CASE WHEN customer_type = 'individual' THEN customer_id END), 0) AS "individual|customers"
             FROM banded GROUP BY 1 ORDER BY MIN(n)"#,
        ),
        ask(
            "loans_by_province_without_the_none_band",
            r#"{"measures": ["loan_balance"], "rows": ["region.province"],
                "filters": [{"level": "customer.loan_band", "op": "not_in", "values": ["none"]}]}"#,
            // The band filter keeps the rows of customer-months with a loan; the balance is read
            // at the latest month.
            r#"WITH loans AS (SELECT customer_id, month, SUM(loan_balance) AS loan FROM balances GROUP BY 1, 2),
             closing AS (SELECT MAX(month) AS last_month FROM balances)
             SELECT r.province AS "region.province",
                SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance
             FROM balances b
             JOIN loans l ON l.customer_id = b.customer_id AND l.month = b.month
             JOIN customers c ON c.customer_id = b.customer_id
             JOIN regions r ON r.region_id = c.region_id
             CROSS JOIN closing
             WHERE l.loan >= 0.01
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "fees_by_year_and_credit_line_band_between",
            r#"{"measures": ["fee_income"], "rows": ["time.year", "customer.credit_line_band"],
                "filters": [{"level": "customer.credit_line_band", "op": "between", "values": ["<10k", "50k-200k"]}]}"#,
            r#"WITH lines AS (SELECT customer_id, month, SUM(credit_line) AS line FROM balances GROUP BY 1, 2),
             banded AS (
               SELECT t.*, COALESCE(l.line, 0) AS line FROM transactions t
               LEFT JOIN lines l ON l.customer_id = t.customer_id AND l.month = date_trunc('month', t.txn_date))
             SELECT to_char(txn_date, '%Y') AS "time.year",
                CASE WHEN line < 10000 THEN '<10k' WHEN line < 50000 THEN '10k-50k' ELSE '50k-200k' END
                    AS "customer.credit_line_band",
                SUM(fee_income) AS fee_income
             FROM banded WHERE line >= 0.01 AND line < 200000
             GROUP BY 1, 2 ORDER BY 1, MIN(line)"#,
        ),
        ask(
            "txn_amount_bands_by_channel_in_2025",
            r#"{"measures": ["txn_count"], "rows": ["customer.txn_amount_band", "channel.channel"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
            // The band is the customer's amount that month over every channel.
            r#"WITH monthly AS (
               SELECT customer_id, date_trunc('month', txn_date) AS month, SUM(amount) AS total
               FROM transactions GROUP BY 1, 2),
             banded AS (
               SELECT ch.channel,
                   CASE WHEN m.total < 1000 THEN 0 WHEN m.total < 10000 THEN 1 WHEN m.total < 50000 THEN 2
                        WHEN m.total < 200000 THEN 3 ELSE 4 END AS band
               FROM transactions t
               JOIN monthly m ON m.customer_id = t.customer_id AND m.month = date_trunc('month', t.txn_date)
               JOIN channels ch ON ch.channel_id = t.channel_id
               WHERE to_char(t.txn_date, '%Y') = '2025')
             SELECT CASE band WHEN 0 THEN '<1k' WHEN 1 THEN '1k-10k' WHEN 2 THEN '10k-50k' WHEN 3 THEN '50k-200k'
                              ELSE '200k+' END AS "customer.txn_amount_band",
                channel AS "channel.channel", COUNT(*) AS txn_count
             FROM banded GROUP BY band, channel ORDER BY band, channel"#,
        ),
        ask(
            "both_facts_by_manager_branch",
            r#"{"measures": ["txn_amount", "customers"], "rows": ["manager.branch"]}"#,
            // A customer's manager works in a branch; the manager's branch, not the customer's.
            r#"WITH t AS (
               SELECT mr.branch, SUM(t.amount) AS txn_amount
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN managers m ON m.manager_id = c.manager_id
               JOIN regions mr ON mr.region_id = m.region_id
               GROUP BY mr.branch),
             b AS (
               SELECT mr.branch, COUNT(DISTINCT b.customer_id) AS customers
               FROM balances b
               JOIN customers c ON c.customer_id = b.customer_id
               JOIN managers m ON m.manager_id = c.manager_id
               JOIN regions mr ON mr.region_id = m.region_id
               GROUP BY mr.branch)
             SELECT COALESCE(t.branch, b.branch) AS "manager.branch", t.txn_amount, b.customers
             FROM t FULL JOIN b ON b.branch = t.branch ORDER BY 1"#,
        ),
        ask(
            "managers_of_one_branch",
            r#"{"measures": ["txn_count", "active_customers"], "rows": ["manager.manager"],
                "filters": [{"level": "manager.branch", "op": "eq", "value": "Hangzhou Central"}]}"#,
            r#"SELECT m.manager_name AS "manager.manager", COUNT(*) AS txn_count,
                COUNT(DISTINCT t.customer_id) AS active_customers
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id
             JOIN regions mr ON mr.region_id = m.region_id
             WHERE mr.branch = 'Hangzhou Central'
             GROUP BY m.manager_name ORDER BY m.manager_name"#,
        ),
        ask(
            "age_bands_unknown_last",
            r#"{"measures": ["active_customers", "customers"], "rows": ["customer.age_band"]}"#,
            // Corporate customers have no age: `unknown`, after the bands.
            r#"WITH t AS (
               SELECT CASE WHEN c.age IS NULL THEN 'unknown' WHEN c.age < 25 THEN '<25' WHEN c.age < 35 THEN '25-34'
                           WHEN c.age < 45 THEN '35-44' WHEN c.age < 55 THEN '45-54' WHEN c.age < 65 THEN '55-64'
                           ELSE '65+' END AS band,
                   MIN(COALESCE(c.age, 1000)) AS rank, COUNT(DISTINCT t.customer_id) AS active_customers
               FROM transactions t JOIN customers c ON c.customer_id = t.customer_id GROUP BY 1),
             b AS (
               SELECT CASE WHEN c.age IS NULL THEN 'unknown' WHEN c.age < 25 THEN '<25' WHEN c.age < 35 THEN '25-34'
                           WHEN c.age < 45 THEN '35-44' WHEN c.age < 55 THEN '45-54' WHEN c.age < 65 THEN '55-64'
                           ELSE '65+' END AS band,
                   MIN(COALESCE(c.age, 1000)) AS rank, COUNT(DISTINCT b.customer_id) AS customers
               FROM balances b JOIN customers c ON c.customer_id = b.customer_id GROUP BY 1)
             SELECT COALESCE(t.band, b.band) AS "customer.age_band", t.active_customers, b.customers
             FROM t FULL JOIN b ON b.band = t.band ORDER BY COALESCE(t.rank, b.rank)"#,
        ),
        ask(
            "the_unknown_age_band_alone",
            r#"{"measures": ["txn_count", "fee_income"], "rows": ["customer.segment"],
                "filters": [{"level": "customer.age_band", "op": "eq", "value": "unknown"}]}"#,
            r#"SELECT c.segment AS "customer.segment", COUNT(*) AS txn_count, SUM(t.fee_income) AS fee_income
             FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
             WHERE c.age IS NULL
             GROUP BY c.segment ORDER BY c.segment"#,
        ),
        ask(
            "empty_dice_with_totals",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["region.province"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2024"},
                            {"level": "time.month", "op": "eq", "value": "2025-01"}],
                "totals": true}"#,
            r#"SELECT r.province AS "region.province", SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE to_char(t.txn_date, '%Y') = '2024' AND to_char(t.txn_date, '%Y-%m') = '2025-01'
             GROUP BY r.province ORDER BY r.province"#,
        )
        .with_totals(
            "SELECT SUM(amount) AS txn_amount, COUNT(*) AS txn_count FROM transactions
             WHERE to_char(txn_date, '%Y') = '2024' AND to_char(txn_date, '%Y-%m') = '2025-01'",
            &[],
        ),
        ask(
            "empty_grand_total_of_both_facts",
            r#"{"measures": ["txn_amount", "txn_count", "active_customers", "avg_ticket", "deposit_balance", "customers"],
                "filters": [{"level": "time.quarter", "op": "eq", "value": "2024-Q1"},
                            {"level": "time.month", "op": "eq", "value": "2024-05"}]}"#,
            // One row, as SQL's aggregate without GROUP BY: sums NULL, counts 0.
            "SELECT t.*, b.* FROM
               (SELECT SUM(amount) AS txn_amount, COUNT(*) AS txn_count,
                    COUNT(DISTINCT customer_id) AS active_customers,
                    CAST(SUM(amount) AS DOUBLE) / NULLIF(COUNT(*), 0) AS avg_ticket
                FROM transactions
                WHERE txn_date BETWEEN DATE '2024-01-01' AND DATE '2024-03-31'
                  AND to_char(txn_date, '%Y-%m') = '2024-05') t
             CROSS JOIN
               (SELECT SUM(deposit_balance) AS deposit_balance, COUNT(DISTINCT customer_id) AS customers
                FROM balances
                WHERE month BETWEEN DATE '2024-01-01' AND DATE '2024-03-01' AND month = DATE '2024-05-01') b",
        ),
        ask(
            "the_unknown_channel_has_no_rows",
            r#"{"measures": ["txn_count"], "rows": ["channel.channel"],
                "filters": [{"level": "channel.channel", "op": "eq", "value": "unknown"}]}"#,
            r#"SELECT ch.channel AS "channel.channel", COUNT(*) AS txn_count
             FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE ch.channel = 'unknown' GROUP BY ch.channel"#,
        ),
        ask(
            "a_prefix_that_matches_nothing",
            r#"{"measures": ["deposit_balance"], "rows": ["region.branch"],
                "filters": [{"level": "region.branch", "op": "prefix", "value": "Zz"}]}"#,
            r#"SELECT r.branch AS "region.branch", SUM(b.deposit_balance) AS deposit_balance
             FROM balances b
             JOIN customers c ON c.customer_id = b.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.branch LIKE 'Zz%' GROUP BY r.branch"#,
        ),
    ]
}

fn more_edges() -> Vec<Question> {
    vec![
        ask(
            "two_filters_on_one_level_intersect",
            r#"{"measures": ["fee_income"], "rows": ["region.province"],
                "filters": [{"level": "region.province", "op": "in", "values": ["Zhejiang", "Jiangsu", "Hubei"]},
                            {"level": "region.province", "op": "not_in", "values": ["Jiangsu"]}]}"#,
            r#"SELECT r.province AS "region.province", SUM(t.fee_income) AS fee_income
             FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.province IN ('Zhejiang', 'Jiangsu', 'Hubei') AND r.province NOT IN ('Jiangsu')
             GROUP BY r.province ORDER BY r.province"#,
        ),
        ask(
            "months_by_prefix",
            r#"{"measures": ["txn_count"], "rows": ["time.month"],
                "filters": [{"level": "time.month", "op": "prefix", "value": "2025-1"}]}"#,
            r#"SELECT to_char(txn_date, '%Y-%m') AS "time.month", COUNT(*) AS txn_count
             FROM transactions WHERE to_char(txn_date, '%Y-%m') LIKE '2025-1%'
             GROUP BY 1 ORDER BY 1"#,
        ),
        ask(
            "education_with_both_distinct_measures",
            r#"{"measures": ["customers", "products_held"], "rows": ["customer.education"]}"#,
            r#"SELECT c.education AS "customer.education", COUNT(DISTINCT b.customer_id) AS customers,
                COUNT(DISTINCT b.product_id) AS products_held
             FROM balances b JOIN customers c ON c.customer_id = b.customer_id
             GROUP BY c.education ORDER BY c.education"#,
        ),
        ask(
            "top_10_customers_by_amount",
            r#"{"measures": ["txn_amount", "txn_count"], "rows": ["customer.id"],
                "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 10}"#,
            r#"SELECT CAST(c.customer_id AS VARCHAR) AS "customer.id", SUM(t.amount) AS txn_amount, COUNT(*) AS txn_count
             FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
             GROUP BY c.customer_id ORDER BY txn_amount DESC, c.customer_id LIMIT 10"#,
        ),
        ask(
            "customers_of_a_branch_in_numeric_order",
            r#"{"measures": ["active_customers", "deposit_balance"], "rows": ["customer.id"],
                "filters": [{"level": "region.branch", "op": "eq", "value": "Wuhan Central"}]}"#,
            // Ids are numbers: 9 before 10. A customer without a balance in the latest month
            // has a row with no balance.
            r#"WITH t AS (
               SELECT t.customer_id, COUNT(DISTINCT t.customer_id) AS active_customers
               FROM transactions t
               JOIN customers c ON c.customer_id = t.customer_id
               JOIN regions r ON r.region_id = c.region_id
               WHERE r.branch = 'Wuhan Central' GROUP BY t.customer_id),
             b AS (
               SELECT b.customer_id,
                   SUM(CASE WHEN b.month = (SELECT MAX(month) FROM balances) THEN b.deposit_balance END) AS deposit_balance
               FROM balances b
               JOIN customers c ON c.customer_id = b.customer_id
               JOIN regions r ON r.region_id = c.region_id
               WHERE r.branch = 'Wuhan Central' GROUP BY b.customer_id)
             SELECT CAST(COALESCE(t.customer_id, b.customer_id) AS VARCHAR) AS "customer.id",
                t.active_customers, b.deposit_balance
             FROM t FULL JOIN b ON b.customer_id = t.customer_id
             ORDER BY COALESCE(t.customer_id, b.customer_id)"#,
        ),
        ask(
            "ordered_by_a_derived_measure_with_nulls_last",
            r#"{"measures": ["avg_ticket", "customers"], "rows": ["product.product"],
                "filters": [{"level": "time.month", "op": "eq", "value": "2024-07"}],
                "order": [{"by": "avg_ticket", "dir": "desc"}]}"#,
            r#"WITH t AS (
               SELECT p.product_name, CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket
               FROM transactions t JOIN products p ON p.product_id = t.product_id
               WHERE t.txn_date >= DATE '2024-07-01' AND t.txn_date < DATE '2024-08-01' GROUP BY 1),
             b AS (
               SELECT p.product_name, COUNT(DISTINCT b.customer_id) AS customers
               FROM balances b JOIN products p ON p.product_id = b.product_id
               WHERE b.month = DATE '2024-07-01' GROUP BY 1)
             SELECT COALESCE(t.product_name, b.product_name) AS "product.product", t.avg_ticket, b.customers
             FROM t FULL JOIN b ON b.product_name = t.product_name
             ORDER BY t.avg_ticket DESC NULLS LAST, 1"#,
        ),
        ask(
            "pivot_totals_of_derived_and_distinct_measures",
            r#"{"measures": ["avg_ticket", "active_customers"], "rows": ["customer.type"], "columns": ["time.year"], "totals": true}"#,
            r#"WITH t AS (SELECT t.*, to_char(t.txn_date, '%Y') AS year, c.customer_type FROM transactions t
                        JOIN customers c ON c.customer_id = t.customer_id)
             SELECT customer_type AS "customer.type",
                CAST(SUM(CASE WHEN year = '2024' THEN amount END) AS DOUBLE) / SUM(CASE WHEN year = '2024' THEN 1 END) AS "2024|avg_ticket",
                COUNT(DISTINCT CASE WHEN year = '2024' THEN customer_id END) AS "2024|active_customers",
                CAST(SUM(CASE WHEN year = '2025' THEN amount END) AS DOUBLE) / SUM(CASE WHEN year = '2025' THEN 1 END) AS "2025|avg_ticket",
                COUNT(DISTINCT CASE WHEN year = '2025' THEN customer_id END) AS "2025|active_customers"
             FROM t GROUP BY customer_type ORDER BY customer_type"#,
        )
        .with_totals(
            r#"WITH t AS (SELECT *, to_char(txn_date, '%Y') AS year FROM transactions)
             SELECT CAST(SUM(amount) AS DOUBLE) / COUNT(*) AS avg_ticket,
                COUNT(DISTINCT customer_id) AS active_customers,
                CAST(SUM(CASE WHEN year = '2024' THEN amount END) AS DOUBLE) / SUM(CASE WHEN year = '2024' THEN 1 END) AS "2024|avg_ticket",
                COUNT(DISTINCT CASE WHEN year = '2024' THEN customer_id END) AS "2024|active_customers",
                CAST(SUM(CASE WHEN year = '2025' THEN amount END) AS DOUBLE) / SUM(CASE WHEN year = '2025' THEN 1 END) AS "2025|avg_ticket",
                COUNT(DISTINCT CASE WHEN year = '2025' THEN customer_id END) AS "2025|active_customers"
             FROM t"#,
            &[r#"SELECT c.customer_type AS "customer.type", CAST(SUM(t.amount) AS DOUBLE) / COUNT(*) AS avg_ticket,
                    COUNT(DISTINCT t.customer_id) AS active_customers
                 FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
                 GROUP BY c.customer_type ORDER BY c.customer_type"#],
        ),
        ask(
            "balances_by_month_with_totals_closing_on_the_filter",
            r#"{"measures": ["deposit_balance", "interest_margin"], "rows": ["time.month"],
                "filters": [{"level": "time.quarter", "op": "eq", "value": "2024-Q3"}], "totals": true}"#,
            r#"SELECT to_char(month, '%Y-%m') AS "time.month", SUM(deposit_balance) AS deposit_balance,
                SUM(interest_margin) AS interest_margin
             FROM balances WHERE month BETWEEN DATE '2024-07-01' AND DATE '2024-09-01'
             GROUP BY 1 ORDER BY 1"#,
        )
        // The grand total closes on the quarter's last month.
        .with_totals(
            "WITH kept AS (SELECT * FROM balances WHERE month BETWEEN DATE '2024-07-01' AND DATE '2024-09-01'),
             closing AS (SELECT MAX(month) AS last_month FROM kept)
             SELECT SUM(CASE WHEN k.month = closing.last_month THEN k.deposit_balance END) AS deposit_balance,
                SUM(k.interest_margin) AS interest_margin
             FROM kept k CROSS JOIN closing",
            &[],
        ),
        ask(
            "month_on_month_where_having_keeps_busy_months",
            r#"{"measures": ["txn_count"], "rows": ["time.month"], "compare": {"level": "time.month", "lag": 1},
                "having": [{"measure": "txn_count", "op": "gt", "value": 900}]}"#,
            // Having picks the months shown; their predecessors count whatever their size.
            r#"WITH by_month AS (SELECT date_trunc('month', txn_date) AS period, COUNT(*) AS txn_count FROM transactions GROUP BY 1)
             SELECT to_char(cur.period, '%Y-%m') AS "time.month", cur.txn_count, prev.txn_count AS txn_count_prev,
                CAST(cur.txn_count - prev.txn_count AS DOUBLE) / NULLIF(prev.txn_count, 0) AS txn_count_change
             FROM by_month cur LEFT JOIN by_month prev ON prev.period = cur.period - INTERVAL '1 month'
             WHERE cur.txn_count > 900 ORDER BY cur.period"#,
        ),
        ask(
            "balances_quarter_on_quarter",
            r#"{"measures": ["deposit_balance", "loan_balance"], "rows": ["time.quarter"],
                "compare": {"level": "time.quarter", "lag": 1}}"#,
            r#"WITH closing AS (
               SELECT date_trunc('quarter', month) AS quarter, MAX(month) AS last_month FROM balances GROUP BY 1),
             by_quarter AS (
               SELECT closing.quarter,
                   SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance,
                   SUM(CASE WHEN b.month = closing.last_month THEN b.loan_balance END) AS loan_balance
               FROM balances b JOIN closing ON closing.quarter = date_trunc('quarter', b.month)
               GROUP BY closing.quarter)
             SELECT to_char(cur.quarter, '%Y') || '-Q' || CAST(CAST(date_part('quarter', cur.quarter) AS BIGINT) AS VARCHAR) AS "time.quarter",
                cur.deposit_balance, prev.deposit_balance AS deposit_balance_prev,
                CAST(cur.deposit_balance - prev.deposit_balance AS DOUBLE) / NULLIF(CAST(prev.deposit_balance AS DOUBLE), 0) AS deposit_balance_change,
                cur.loan_balance, prev.loan_balance AS loan_balance_prev,
                CAST(cur.loan_balance - prev.loan_balance AS DOUBLE) / NULLIF(CAST(prev.loan_balance AS DOUBLE), 0) AS loan_balance_change
             FROM by_quarter cur LEFT JOIN by_quarter prev ON prev.quarter = cur.quarter - INTERVAL '3 months'
             ORDER BY cur.quarter"#,
        ),
        ask(
            "a_filtered_year_against_the_year_before",
            r#"{"measures": ["active_customers", "customers"], "rows": ["time.year"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}],
                "compare": {"level": "time.year", "lag": 1}}"#,
            r#"WITH t AS (SELECT to_char(txn_date, '%Y') AS year, COUNT(DISTINCT customer_id) AS n FROM transactions GROUP BY 1),
             b AS (SELECT to_char(month, '%Y') AS year, COUNT(DISTINCT customer_id) AS n FROM balances GROUP BY 1)
             SELECT '2025' AS "time.year",
                t25.n AS active_customers, t24.n AS active_customers_prev,
                CAST(t25.n - t24.n AS DOUBLE) / NULLIF(t24.n, 0) AS active_customers_change,
                b25.n AS customers, b24.n AS customers_prev,
                CAST(b25.n - b24.n AS DOUBLE) / NULLIF(b24.n, 0) AS customers_change
             FROM t t25, t t24, b b25, b b24
             WHERE t25.year = '2025' AND t24.year = '2024' AND b25.year = '2025' AND b24.year = '2024'"#,
        ),
    ]
}

fn shares() -> Vec<Question> {
    vec![
        ask(
            "channel_share_of_each_months_transactions",
            r#"{"measures": ["txn_count"], "rows": ["time.month", "channel.channel"],
                "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q2"}],
                "shares": [{"measure": "txn_count", "of": ["time.month"]}]}"#,
            r#"SELECT month AS "time.month", channel AS "channel.channel", n AS txn_count,
                CAST(n AS DOUBLE) / CAST(SUM(n) OVER (PARTITION BY month) AS DOUBLE) AS "txn_count_share_of_time.month"
             FROM (SELECT to_char(t.txn_date, '%Y-%m') AS month, ch.channel, COUNT(*) AS n
                   FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
                   WHERE t.txn_date >= DATE '2025-04-01' AND t.txn_date < DATE '2025-07-01'
                   GROUP BY 1, 2)
             ORDER BY month, channel"#,
        ),
        ask(
            "each_branchs_share_of_its_city_by_the_largest",
            r#"{"measures": ["fee_income"], "rows": ["region.branch"],
                "shares": [{"measure": "fee_income", "of": ["region.city"], "name": "of_city"},
                           {"measure": "fee_income"}],
                "order": [{"by": "fee_income", "dir": "desc"}], "limit": 8}"#,
            r#"SELECT branch AS "region.branch", fee AS fee_income,
                CAST(fee AS DOUBLE) / CAST(SUM(fee) OVER (PARTITION BY city) AS DOUBLE) AS of_city,
                CAST(fee AS DOUBLE) / CAST(SUM(fee) OVER () AS DOUBLE) AS fee_income_share
             FROM (SELECT r.city, r.branch, SUM(t.fee_income) AS fee
                   FROM transactions t
                   JOIN customers c ON c.customer_id = t.customer_id
                   JOIN regions r ON r.region_id = c.region_id
                   GROUP BY 1, 2)
             ORDER BY fee DESC, branch LIMIT 8"#,
        ),
        ask(
            "each_categorys_share_of_all_customers_counts_each_customer_once",
            // Distinct counts do not add up: the whole is every customer holding a product.
            r#"{"measures": ["customers"], "rows": ["product.category"],
                "shares": [{"measure": "customers"}]}"#,
            r#"SELECT p.category AS "product.category", COUNT(DISTINCT b.customer_id) AS customers,
                CAST(COUNT(DISTINCT b.customer_id) AS DOUBLE)
                  / CAST((SELECT COUNT(DISTINCT customer_id) FROM balances) AS DOUBLE) AS customers_share
             FROM balances b JOIN products p ON p.product_id = b.product_id
             GROUP BY p.category ORDER BY p.category"#,
        ),
    ]
}
