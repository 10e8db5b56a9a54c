//! The fixed part of the bank: its provinces and cities, products, channels and customer
//! segments, and the names customers and managers are given. The same at every scale and seed.

/// A city: name, number of branches, tier (how many customers each of its branches has).
type City = (&'static str, u32, u32);

/// The provinces and their cities.
#[rustfmt::skip]
pub(super) const PROVINCES: [(&str, &[City]); 6] = [
    ("Zhejiang",  &[("Hangzhou", 5, 3), ("Ningbo", 4, 2), ("Wenzhou", 3, 2), ("Shaoxing", 2, 1)]),
    ("Jiangsu",   &[("Nanjing", 5, 3), ("Suzhou", 4, 3), ("Wuxi", 3, 2)]),
    ("Guangdong", &[("Guangzhou", 5, 3), ("Shenzhen", 5, 3), ("Dongguan", 3, 2), ("Foshan", 2, 2)]),
    ("Shandong",  &[("Jinan", 3, 2), ("Qingdao", 4, 2)]),
    ("Sichuan",   &[("Chengdu", 5, 3), ("Mianyang", 2, 1)]),
    ("Hubei",     &[("Wuhan", 4, 3), ("Yichang", 2, 1), ("Xiangyang", 2, 1)]),
];
pub(super) const BRANCH_NAMES: [&str; 5] = ["Central", "East", "West", "North", "South"];
/// The first ("Central") branch of a city is this much busier than the others.
pub(super) const CENTRAL_BRANCH_FACTOR: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Category {
    Deposit,
    Loan,
    Card,
    Wealth,
    Intermediary,
}

impl Category {
    pub(super) fn name(self) -> &'static str {
        match self {
            Category::Deposit => "deposit",
            Category::Loan => "loan",
            Category::Card => "card",
            Category::Wealth => "wealth",
            Category::Intermediary => "intermediary",
        }
    }

    /// How balances grow with the segment's `balance_factor`: wealthier customers hold much more
    /// money, borrow somewhat more and get somewhat higher credit lines.
    pub(super) fn balance_elasticity(self) -> f64 {
        match self {
            Category::Deposit | Category::Wealth | Category::Intermediary => 1.0,
            Category::Loan => 0.75,
            Category::Card => 0.5,
        }
    }
}

/// A product and how customers use it. Money is in CNY for a mass customer of weight 1.
#[derive(Debug)]
pub(super) struct Product {
    pub(super) name: &'static str,
    pub(super) category: Category,
    /// How likely an individual / a corporate is to hold it (0: never).
    pub(super) individual: f64,
    pub(super) corporate: f64,
    /// How often a holder transacts with it, relative to the other products held.
    pub(super) activity: f64,
    pub(super) ticket_cny: f64,
    pub(super) fee_bp: i64,
    /// Yearly interest margin on the balance, in basis points.
    pub(super) margin_bp: i64,
    /// Typical balance (or credit line), CNY.
    pub(super) balance_cny: f64,
}

const fn product(
    name: &'static str,
    category: Category,
    (individual, corporate): (f64, f64),
    activity: f64,
    ticket_cny: f64,
    (fee_bp, margin_bp): (i64, i64),
    balance_cny: f64,
) -> Product {
    Product {
        name,
        category,
        individual,
        corporate,
        activity,
        ticket_cny,
        fee_bp,
        margin_bp,
        balance_cny,
    }
}

use Category::{Card, Deposit, Intermediary, Loan, Wealth};
/// The products; `product_id` is the position plus one. Everyone holds the first, the demand
/// deposit account, so its holding weights are unused.
#[rustfmt::skip]
pub(super) const PRODUCTS: [Product; 20] = [
    //       name                     category      held by (ind, corp)  activity  ticket   (fee, margin) bp  balance
    product("Demand Deposit",        Deposit,      (0.0, 0.0), 10.0,   2_400.0, (10, 150),   8_000.0),
    product("Time Deposit 1Y",       Deposit,      (5.0, 4.0),  0.3,  60_000.0, (0, 120),   30_000.0),
    product("Time Deposit 3Y",       Deposit,      (3.0, 2.0),  0.2, 150_000.0, (0, 100),   50_000.0),
    product("Large-Denomination CD", Deposit,      (1.0, 4.0),  0.2, 600_000.0, (0, 80),   100_000.0),
    product("Mortgage",              Loan,         (4.0, 0.0),  1.0,  15_000.0, (20, 180), 300_000.0),
    product("Consumer Loan",         Loan,         (3.0, 0.0),  1.0,   6_000.0, (60, 400),  20_000.0),
    product("Auto Loan",             Loan,         (2.0, 0.0),  1.0,   9_000.0, (40, 300),  60_000.0),
    product("Business Loan",         Loan,         (1.0, 6.0),  1.0,  60_000.0, (20, 250), 100_000.0),
    product("Working Capital Loan",  Loan,         (0.0, 6.0),  1.5,  90_000.0, (16, 220), 150_000.0),
    product("Classic Credit Card",   Card,         (6.0, 0.0),  8.0,     900.0, (120, 300), 15_000.0),
    product("Platinum Credit Card",  Card,         (2.0, 0.0),  8.0,   3_600.0, (80, 300),  50_000.0),
    product("Corporate Card",        Card,         (0.0, 4.0),  6.0,   9_000.0, (60, 200),  20_000.0),
    product("Money Market Fund",     Wealth,       (5.0, 3.0),  1.0,  15_000.0, (20, 40),   20_000.0),
    product("Bond Fund",             Wealth,       (3.0, 2.0),  0.5,  30_000.0, (60, 60),   30_000.0),
    product("Equity Fund",           Wealth,       (3.0, 1.0),  0.8,  24_000.0, (100, 80),  25_000.0),
    product("Structured Note",       Wealth,       (1.0, 2.0),  0.3,  90_000.0, (100, 70), 100_000.0),
    product("Insurance Agency",      Intermediary, (3.0, 2.0),  0.3,   9_000.0, (600, 0),        0.0),
    product("FX Service",            Intermediary, (2.0, 4.0),  0.5,  30_000.0, (60, 0),         0.0),
    product("Payroll Service",       Intermediary, (0.0, 5.0),  2.0,  90_000.0, (6, 0),          0.0),
    product("Cash Management",       Intermediary, (0.0, 4.0),  2.0, 150_000.0, (6, 0),          0.0),
];
pub(super) const MAX_HOLDINGS: usize = 6;

pub(super) const CHANNELS: [&str; 6] = ["counter", "ATM", "POS", "phone", "online", "mobile"];
/// Channel mix by product category, in the order of `CHANNELS`, at the start of the window.
pub(super) const CHANNEL_MIX: [[f64; 6]; 5] = [
    [20.0, 25.0, 0.0, 5.0, 20.0, 30.0], // deposit
    [40.0, 0.0, 0.0, 10.0, 25.0, 25.0], // loan
    [3.0, 10.0, 55.0, 2.0, 10.0, 20.0], // card
    [30.0, 0.0, 0.0, 10.0, 25.0, 35.0], // wealth
    [45.0, 0.0, 0.0, 15.0, 25.0, 15.0], // intermediary
];
/// Each channel's weight is multiplied by this every month: the shift to mobile and online.
pub(super) const CHANNEL_TREND: [f64; 6] = [0.975, 0.985, 1.0, 0.98, 1.005, 1.03];
/// A flat fee per transaction by channel, in cents.
pub(super) const CHANNEL_FEE_CENTS: [i64; 6] = [200, 0, 0, 100, 0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Segment {
    Mass,
    Affluent,
    Private,
    Sme,
    LargeCorp,
}

/// How a segment differs: size, channels, holdings, and who its customers are.
#[derive(Debug)]
pub(super) struct SegmentProfile {
    pub(super) name: &'static str,
    pub(super) corporate: bool,
    /// Balances relative to a mass customer (see `Category::balance_elasticity`).
    pub(super) balance_factor: f64,
    /// Ticket sizes relative to a mass customer.
    pub(super) ticket_factor: f64,
    /// Products held, inclusive range.
    pub(super) holdings: (usize, usize),
    /// Multiplies `CHANNEL_MIX`, in the order of `CHANNELS`.
    pub(super) channel_bias: [f64; 6],
    /// Weights of `EDUCATIONS` (unused for corporates).
    pub(super) education: [f64; 4],
    pub(super) mean_age: f64,
    /// Median monthly income (revenue for corporates), CNY.
    pub(super) income_cny: f64,
}

pub(super) const SEGMENTS: [SegmentProfile; 5] = [
    SegmentProfile {
        name: "mass",
        corporate: false,
        balance_factor: 1.0,
        ticket_factor: 1.0,
        holdings: (1, 4),
        channel_bias: [0.8, 1.3, 1.1, 0.6, 0.9, 1.3],
        education: [40.0, 45.0, 12.0, 3.0],
        mean_age: 40.0,
        income_cny: 6_000.0,
    },
    SegmentProfile {
        name: "affluent",
        corporate: false,
        balance_factor: 4.0,
        ticket_factor: 1.3,
        holdings: (2, 5),
        channel_bias: [1.0, 1.0, 1.0, 1.0, 1.1, 1.1],
        education: [15.0, 50.0, 28.0, 7.0],
        mean_age: 47.0,
        income_cny: 25_000.0,
    },
    SegmentProfile {
        name: "private",
        corporate: false,
        balance_factor: 20.0,
        ticket_factor: 2.0,
        holdings: (3, 6),
        channel_bias: [2.0, 0.5, 1.0, 2.5, 1.0, 0.8],
        education: [10.0, 40.0, 35.0, 15.0],
        mean_age: 55.0,
        income_cny: 120_000.0,
    },
    SegmentProfile {
        name: "sme",
        corporate: true,
        balance_factor: 8.0,
        ticket_factor: 2.0,
        holdings: (2, 5),
        channel_bias: [1.5, 0.8, 0.6, 1.0, 1.5, 0.7],
        education: [0.0; 4],
        mean_age: 0.0,
        income_cny: 800_000.0,
    },
    SegmentProfile {
        name: "large_corp",
        corporate: true,
        balance_factor: 30.0,
        ticket_factor: 4.0,
        holdings: (3, 6),
        channel_bias: [2.0, 0.2, 0.3, 1.0, 2.5, 0.3],
        education: [0.0; 4],
        mean_age: 0.0,
        income_cny: 30_000_000.0,
    },
];

impl Segment {
    pub(super) fn profile(self) -> &'static SegmentProfile {
        &SEGMENTS[self as usize]
    }
}

pub(super) const SURNAMES: [&str; 20] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
];
pub(super) const GIVEN_NAMES: [&str; 20] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao",
    "Ming", "Chao", "Xiuying", "Hua", "Ping", "Gang", "Xia",
];
pub(super) const FIRM_NAMES: [&str; 12] = [
    "Hengda", "Xinghe", "Jinhui", "Tianrui", "Huaxin", "Longteng", "Minsheng", "Ruifeng", "Boya",
    "Zhongtai", "Yuanhang", "Kaiyuan",
];
pub(super) const FIRM_KINDS: [&str; 8] = [
    "Trading Co.",
    "Technology Co.",
    "Manufacturing Co.",
    "Logistics Co.",
    "Textiles Co.",
    "Foods Co.",
    "Construction Co.",
    "Pharma Co.",
];
